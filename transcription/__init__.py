"""Recordings and their transcripts: download, storage, decoding and offline recognition."""
