"""The loyalty engine: program, members, points ledger (entries + lots), tiers, rewards,
orders and refunds, and the LoyaltyEvent outbox. Knows nothing about SMS."""
