"""Web UI routes: overview, sites, devices, audit log."""

from django.urls import path

from gateways import views

urlpatterns = [
    path("", views.overview, name="overview"),
    path("live/gateways/", views.live_gateways, name="live_gateways"),
    path("live/authorizations/", views.live_authorizations, name="live_authorizations"),
    path("sites/", views.site_list, name="site_list"),
    path("sites/new/", views.site_new, name="site_new"),
    path("sites/<str:pk>/", views.site_detail, name="site_detail"),
    path("sites/<str:pk>/edit/", views.site_edit, name="site_edit"),
    path("sites/<str:pk>/delete/", views.site_delete, name="site_delete"),
    path("sites/<str:pk>/token/", views.site_token, name="site_token"),
    path("sites/<str:pk>/deploy/", views.site_deploy, name="site_deploy"),
    path(
        "sites/<str:pk>/tokens/<str:token_pk>/revoke/",
        views.site_token_revoke,
        name="site_token_revoke",
    ),
    path("gateways/<str:pk>/endpoint/", views.gateway_endpoint, name="gateway_endpoint"),
    path("audit/", views.authorization_list, name="authorization_list"),
    path("devices/", views.device_list, name="device_list"),
    path("devices/new/", views.device_new, name="device_new"),
    path("devices/<str:pk>/", views.device_detail, name="device_detail"),
    path("devices/<str:pk>/registered/", views.device_registered, name="device_registered"),
    path("devices/<str:pk>/config/", views.device_config, name="device_config"),
    path("devices/<str:pk>/qr.svg", views.device_qr, name="device_qr"),
    path("devices/<str:pk>/new-config/", views.device_new_config, name="device_new_config"),
    path("devices/<str:pk>/delete/", views.device_delete, name="device_delete"),
    path("devices/<str:pk>/disable/", views.device_disable, name="device_disable"),
    path("devices/<str:pk>/enable/", views.device_enable, name="device_enable"),
]
