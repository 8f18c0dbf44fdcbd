from django.urls import path

from automations.views import analytics, campaigns, flows

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
    path("flows/", flows.flows, name="flows"),
    path("flows/install/", flows.flow_install_view, name="flow_install"),
    path("flows/new/", flows.flow_new, name="flow_new"),
    path("flows/<int:flow_id>/", flows.flow_detail, name="flow_detail"),
    path("flows/<int:flow_id>/edit/", flows.flow_edit, name="flow_edit"),
    path("flows/<int:flow_id>/status/", flows.flow_status, name="flow_status"),
    path("flows/<int:flow_id>/delete/", flows.flow_delete, name="flow_delete"),
    path("flows/<int:flow_id>/dry-run/", flows.flow_dry_run_start, name="flow_dry_run_start"),
    path("flows/<int:flow_id>/dry-runs/<int:job_id>/", flows.flow_dry_run, name="flow_dry_run"),
    path("flows/<int:flow_id>/runs/", flows.flow_runs, name="flow_runs"),
    path("flows/<int:flow_id>/runs/<int:run_id>/", flows.flow_run, name="flow_run"),
    path("flows/members/<int:member_id>/", flows.member_flow_runs, name="member_flow_runs"),
    path("analytics/", analytics.analytics, name="analytics"),
    path("analytics/summary.csv", analytics.summary_csv, name="analytics_summary_csv"),
    path("analytics/daily.csv", analytics.daily_csv, name="analytics_daily_csv"),
]
