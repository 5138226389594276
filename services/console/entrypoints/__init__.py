"""The console's HTTP entry points: pages (GET), form actions (POST), the live event stream."""
