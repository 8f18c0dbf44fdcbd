"""Dashboard pages of automations: campaigns (campaigns.py) and analytics (analytics.py)."""
