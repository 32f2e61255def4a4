import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crcr_site.settings")
application = get_wsgi_application()

# Everything loaded so far (Django, the apps, their modules) lives as long as the process:
# move it out of the garbage collector's way, so that a full collection during a request
# walks only that request's objects (pauses of tens of ms on a HUD page otherwise).
gc.freeze()
