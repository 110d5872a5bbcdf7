"""Sample photos bundled with scikit-image, so the app can be tried without uploading."""

from __future__ import annotations

import os

_FILES = {
    "Cat (chelsea.png)": "chelsea.png",
    "Espresso (coffee.png)": "coffee.png",
    "Camera on a tripod (camera.png)": "camera.png",
    "Motorcycle (motorcycle_left.png)": "motorcycle_left.png",
    "Rocket (rocket.jpg)": "rocket.jpg",
}


def sample_images() -> dict[str, str]:
    """Display name -> file path of the sample photos that are installed."""
    try:
        import skimage
    except ImportError:
        return {}
    folder = os.path.join(os.path.dirname(skimage.__file__), "data")
    return {
        label: os.path.join(folder, f)
        for label, f in _FILES.items()
        if os.path.isfile(os.path.join(folder, f))
    }
