"""Receiving: the portal, the signed acknowledgement, and what happens when none comes."""
