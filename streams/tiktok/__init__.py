"""TikTok Events API client."""
