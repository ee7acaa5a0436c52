"""Web UI routes: sign-in, groups, actors, settings."""

from django.urls import path

from accounts import views
from accounts.directories import scim
from accounts.directories import views as directory_views
from accounts.signin import views as signin_views

urlpatterns = [
    path("sign-in/", signin_views.root_sign_in, name="sign_in"),
    path("sign-out/", views.SignOutView.as_view(), name="sign_out"),
    path("groups/", views.group_list, name="group_list"),
    path("groups/new/", views.group_new, name="group_new"),
    path("groups/<str:pk>/", views.group_detail, name="group_detail"),
    path("groups/<str:pk>/edit/", views.group_edit, name="group_edit"),
    path("groups/<str:pk>/delete/", views.group_delete, name="group_delete"),
    path("groups/<str:pk>/members/add/", views.group_member_add, name="group_member_add"),
    path("groups/<str:pk>/members/set/", views.group_members_set, name="group_members_set"),
    path(
        "groups/<str:pk>/members/<str:actor_pk>/remove/",
        views.group_member_remove,
        name="group_member_remove",
    ),
    path("actors/", views.actor_list, name="actor_list"),
    path("actors/new/", views.actor_new, name="actor_new"),
    path("actors/<str:pk>/", views.actor_detail, name="actor_detail"),
    path("actors/<str:pk>/edit/", views.actor_edit, name="actor_edit"),
    path("actors/<str:pk>/disable/", views.actor_disable, name="actor_disable"),
    path("actors/<str:pk>/enable/", views.actor_enable, name="actor_enable"),
    path("actors/<str:pk>/delete/", views.actor_delete, name="actor_delete"),
    path("settings/", views.settings_page, name="settings"),
    path("directories/", directory_views.directory_list, name="directory_list"),
    path("directories/new/", directory_views.directory_new, name="directory_new"),
    path("directories/<str:pk>/", directory_views.directory_detail, name="directory_detail"),
    path("directories/<str:pk>/edit/", directory_views.directory_edit, name="directory_edit"),
    path(
        "directories/<str:pk>/<slug:action>/",
        directory_views.directory_action,
        name="directory_action",
    ),
    path("scim/v2/<uuid:directory_id>", scim.scim_view, name="scim_root"),
    path("scim/v2/<uuid:directory_id>/<path:path>", scim.scim_view, name="scim"),
    path("settings/tokens/<str:pk>/revoke/", views.token_revoke, name="token_revoke"),
]
