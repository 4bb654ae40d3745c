"""Building scenario images: offline base bootstrap, content-hash tags, streamed builds."""
