"""The headless Chromium the page tests drive (selenium + the distribution's chromedriver)."""

import contextlib
import os

CHROMIUM = os.environ.get("THYROID_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("THYROID_CHROMEDRIVER", "/usr/bin/chromedriver")


def missing():
    """Why no browser test can run here, or None."""
    try:
        import selenium  # noqa: F401  (only whether it imports)
    except ImportError:
        return "selenium is not installed"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} not found (apt-get install -y chromium chromium-driver)"
    return None


@contextlib.contextmanager
def headless(profile_dir, height, width=430):
    """A Chromium ``width`` px wide (default: a phone's 430 px), ``height`` px tall, quit on
    exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run", f"--window-size={width},{height}",
                     f"--user-data-dir={profile_dir}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
