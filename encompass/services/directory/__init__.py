"""The directory: settings, calendars, Key Adults and rosters loaded from CSV files."""
