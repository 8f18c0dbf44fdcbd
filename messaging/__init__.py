"""The SMS channel: senders, subscribers and consent, outbound/inbound messages, links,
the compliance gate, segment counting, gateways (Twilio, sandbox), webhooks and the dispatcher."""
