"""dsp-mapping: decides who each alert goes to (fan-out to DCC alerts) and reads the delivery log."""
