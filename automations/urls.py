from django.urls import path

from automations.views import analytics, campaigns

dashboard_urlpatterns = [
    path("campaigns/", campaigns.campaigns, name="campaigns"),
    path("campaigns/new/", campaigns.campaign_new, name="campaign_new"),
    path("campaigns/preview/", campaigns.campaign_preview, name="campaign_preview"),
    path("campaigns/<int:campaign_id>/", campaigns.campaign_detail, name="campaign_detail"),
    path("campaigns/<int:campaign_id>/edit/", campaigns.campaign_edit, name="campaign_edit"),
    path(
        "campaigns/<int:campaign_id>/schedule/",
        campaigns.campaign_schedule,
        name="campaign_schedule",
    ),
    path("campaigns/<int:campaign_id>/cancel/", campaigns.campaign_cancel, name="campaign_cancel"),
    path(
        "campaigns/<int:campaign_id>/progress/",
        campaigns.campaign_progress,
        name="campaign_progress",
    ),
    path(
        "campaigns/<int:campaign_id>/stats.csv",
        campaigns.campaign_stats_csv,
        name="campaign_stats_csv",
    ),
    path("analytics/", analytics.analytics, name="analytics"),
    path("analytics/summary.csv", analytics.summary_csv, name="analytics_summary_csv"),
    path("analytics/daily.csv", analytics.daily_csv, name="analytics_daily_csv"),
]
