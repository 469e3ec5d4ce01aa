"""The matcher's parts: names, dates, postcodes, UPNs, scoring, decision, roster index."""
