from rest_framework.routers import SimpleRouter

from accounts.api import views

router = SimpleRouter(trailing_slash=False)
router.register("actors", views.ActorViewSet, basename="api-actor")
router.register("groups", views.GroupViewSet, basename="api-group")
router.register("memberships", views.MembershipViewSet, basename="api-membership")
router.register("auth-providers", views.AuthProviderViewSet, basename="api-auth-provider")
router.register("directories", views.DirectoryViewSet, basename="api-directory")
router.register("api-tokens", views.ApiTokenViewSet, basename="api-token")

urlpatterns = router.urls
