"""Serving media files: who may play what, opening and sending the bytes."""
