"""The storefront widget: a drop-in script with the brand's publishable key (SMS opt-in,
points, tier progress, rewards and redemption for the signed-in customer)."""
