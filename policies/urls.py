"""Web UI routes: resources and policies."""

from django.urls import path

from policies import views

urlpatterns = [
    path("resources/", views.resource_list, name="resource_list"),
    path("resources/new/", views.resource_new, name="resource_new"),
    path("resources/dns-match/", views.dns_match, name="dns_match"),
    path("resources/<str:pk>/", views.resource_detail, name="resource_detail"),
    path("resources/<str:pk>/edit/", views.resource_edit, name="resource_edit"),
    path("resources/<str:pk>/delete/", views.resource_delete, name="resource_delete"),
    path("policies/", views.policy_list, name="policy_list"),
    path("policies/new/", views.policy_new, name="policy_new"),
    path("policies/options/group/", views.options, {"what": "group"}, name="group_options"),
    path(
        "policies/options/resource/", views.options, {"what": "resource"}, name="resource_options"
    ),
    path("policies/<str:pk>/", views.policy_detail, name="policy_detail"),
    path("policies/<str:pk>/edit/", views.policy_edit, name="policy_edit"),
    path("policies/<str:pk>/disable/", views.policy_disable, name="policy_disable"),
    path("policies/<str:pk>/enable/", views.policy_enable, name="policy_enable"),
    path("policies/<str:pk>/delete/", views.policy_delete, name="policy_delete"),
]
