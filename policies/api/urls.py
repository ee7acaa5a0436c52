from rest_framework.routers import SimpleRouter

from policies.api import views

router = SimpleRouter(trailing_slash=False)
router.register("resources", views.ResourceViewSet, basename="api-resource")
router.register("policies", views.PolicyViewSet, basename="api-policy")

urlpatterns = router.urls
