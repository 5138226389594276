"""The parties the console talks to: the public HTTP API (`landfall`) and the bus notices (`notices`)."""
