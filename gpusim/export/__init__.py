"""Writers for results: Chrome/Perfetto traces and atomic file output."""
