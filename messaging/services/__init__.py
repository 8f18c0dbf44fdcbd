"""All writes of the SMS channel (house style: services write, selectors read)."""
