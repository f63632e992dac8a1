"""Example models: the book's chapter 6 (``book``) and a zoo (``zoo``)."""
