"""The small runtime every Landfall service stands on: settings, logs, bus, database, HTTP."""
