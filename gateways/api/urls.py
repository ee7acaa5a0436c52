from rest_framework.routers import SimpleRouter

from gateways.api import views

router = SimpleRouter(trailing_slash=False)
router.register("sites", views.SiteViewSet, basename="api-site")
router.register("gateways", views.GatewayViewSet, basename="api-gateway")
router.register("gateway-tokens", views.GatewayTokenViewSet, basename="api-gateway-token")
router.register("devices", views.DeviceViewSet, basename="api-device")
router.register("static-devices", views.StaticDeviceViewSet, basename="api-static-device")
router.register("authorizations", views.AuthorizationViewSet, basename="api-authorization")

urlpatterns = router.urls
