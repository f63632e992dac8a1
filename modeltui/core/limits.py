"""Limits shared by the command line and the app."""

#: Python frames allowed while modeltui works on a model: torch walks and calls modules
#: recursively, so a model nested ~1,000 deep needs ~3,000 frames; crashes start near
#: 12,000 on an 8 MB stack (the app's worker threads get a 64 MB one)
RECURSION_LIMIT = 8000
