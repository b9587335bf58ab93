"""hub-capture: reads what the CSPs send, checks it strictly and captures its timing points."""
