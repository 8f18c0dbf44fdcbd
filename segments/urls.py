from django.urls import path

from segments import views

dashboard_urlpatterns = [
    path("segments/", views.segments, name="segments"),
    path("segments/new/", views.segment_new, name="segment_new"),
    path("segments/builder/", views.segment_builder, name="segment_builder"),
    path("segments/preview/", views.segment_preview, name="segment_preview"),
    path("segments/<int:segment_id>/", views.segment_edit, name="segment_edit"),
    path("segments/<int:segment_id>/count/", views.segment_count, name="segment_count"),
    path("segments/<int:segment_id>/delete/", views.segment_delete, name="segment_delete"),
]
