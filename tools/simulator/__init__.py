"""Traffic simulator: realistic CSP feeds in, and the Service User side of the DSP."""
