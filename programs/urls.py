from django.urls import path, re_path

from programs import apis, views

# External ids come from storefronts and may hold slashes ("gid://shopify/Customer/1"), so
# member routes match any text; the specific suffixes are tried first.
api_urlpatterns = [
    path("members", apis.MembersApi.as_view(), name="api_members"),
    re_path(
        r"^members/(?P<external_id>.+)/ledger$",
        apis.MemberLedgerApi.as_view(),
        name="api_member_ledger",
    ),
    re_path(
        r"^members/(?P<external_id>.+)/adjustments$",
        apis.MemberAdjustmentsApi.as_view(),
        name="api_member_adjustments",
    ),
    re_path(
        r"^members/(?P<external_id>.+)/redemptions$",
        apis.MemberRedemptionsApi.as_view(),
        name="api_member_redemptions",
    ),
    re_path(r"^members/(?P<external_id>.+)$", apis.MemberDetailApi.as_view(), name="api_member"),
    path("orders", apis.OrdersApi.as_view(), name="api_orders"),
    re_path(
        r"^orders/(?P<order_id>.+)/refunds$",
        apis.OrderRefundsApi.as_view(),
        name="api_order_refunds",
    ),
    path("rewards", apis.RewardsApi.as_view(), name="api_rewards"),
    path("rewards/<int:reward_id>", apis.RewardDetailApi.as_view(), name="api_reward"),
    path(
        "redemptions/<int:redemption_id>", apis.RedemptionDetailApi.as_view(), name="api_redemption"
    ),
    path(
        "redemptions/<int:redemption_id>/use",
        apis.RedemptionUseApi.as_view(),
        name="api_redemption_use",
    ),
    path(
        "redemptions/<int:redemption_id>/cancel",
        apis.RedemptionCancelApi.as_view(),
        name="api_redemption_cancel",
    ),
    path("program", apis.ProgramApi.as_view(), name="api_program"),
    path("tiers", apis.TiersApi.as_view(), name="api_tiers"),
    path("tiers/<int:tier_id>", apis.TierDetailApi.as_view(), name="api_tier"),
    path("multiplier-events", apis.MultiplierEventsApi.as_view(), name="api_multiplier_events"),
    path(
        "multiplier-events/<int:event_id>",
        apis.MultiplierEventDetailApi.as_view(),
        name="api_multiplier_event",
    ),
]

dashboard_urlpatterns = [
    path("members/", views.members, name="members"),
    path("members/import/", views.member_import, name="member_import"),
    path(
        "members/import/<int:import_id>/",
        views.member_import_detail,
        name="member_import_detail",
    ),
    path("members/<int:member_id>/", views.member_detail, name="member_detail"),
    path("members/<int:member_id>/adjust/", views.member_adjust, name="member_adjust"),
    path("program/", views.program_settings, name="program_settings"),
    path("program/events/", views.multiplier_event_create, name="multiplier_event_create"),
    path(
        "program/events/<int:event_id>/delete/",
        views.multiplier_event_delete,
        name="multiplier_event_delete",
    ),
    path("program/tiers/", views.tiers, name="program_tiers"),
    path("program/tiers/<int:tier_id>/delete/", views.tier_delete, name="tier_delete"),
    path("program/rewards/", views.rewards, name="program_rewards"),
    path("program/rewards/<int:reward_id>/toggle/", views.reward_toggle, name="reward_toggle"),
]
