"""The shell the four services share: consumer loop, publish/ack policy, shutdown, envelopes,
input validation, dead letters."""
