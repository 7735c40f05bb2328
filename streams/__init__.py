"""Leadstream: CRM lead status changes joined to TikTok ad clicks, sent to the Events API."""

__version__ = "0.1.0"
