"""Sign-in routes. The per-account pages live under ``/<slug>/sign-in``; they are included last
so that every fixed route of the portal wins over an account slug."""

from django.urls import path

from accounts.signin import views

admin_urlpatterns = [
    path("settings/providers/", views.provider_list, name="provider_list"),
    path("settings/providers/new/", views.provider_new, name="provider_new"),
    path("settings/providers/<str:pk>/", views.provider_detail, name="provider_detail"),
    path("settings/providers/<str:pk>/test/", views.provider_test, name="provider_test"),
    path("settings/providers/<str:pk>/enable/", views.provider_enable, name="provider_enable"),
    path("settings/providers/<str:pk>/disable/", views.provider_disable, name="provider_disable"),
    path("sign-in/oidc/callback", views.oidc_callback, name="oidc_callback"),
    path("device", views.device_confirm, name="device_confirm"),
    path("api/client/device-code", views.device_start, name="device_start"),
    path("api/client/token", views.device_token, name="device_token"),
    path("api/client/introspect", views.token_introspect, name="token_introspect"),
]

account_urlpatterns = [
    path("<slug:slug>/sign-in", views.account_sign_in, name="account_sign_in"),
    path("<slug:slug>/sign-in/email", views.email_request, name="email_request"),
    path("<slug:slug>/sign-in/email/<str:code_id>", views.email_code, name="email_code"),
    path("<slug:slug>/sign-in/oidc/<str:provider_id>", views.oidc_start, name="oidc_start"),
]

urlpatterns = admin_urlpatterns
