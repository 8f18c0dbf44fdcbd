"""Shopify's webhooks (orders, refunds, customers), verified and mapped onto the same
services as the REST API."""
