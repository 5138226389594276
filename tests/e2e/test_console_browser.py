"""The console in a real browser (Debian's chromium through chromedriver), on the whole stack.

The flow of issue 16, as a person clicks it: sign in → add a basic-auth registry on a local
registry that needs a password, and test it → create a service → deploy an image → generate a CI
token → CI's webhook deploy seen turning `succeeded` on the page without a reload → promote to
staging → redeploy the previous image → sign in as a viewer and find no button that changes
anything. On the way it saves the screenshots of the README (docs/console/*.png), at 1280 px and,
for the component page, at a phone's width.

Waits are on what the page shows (`WebDriverWait` on an element or a text), never a sleep.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from libs.devstack.servers import DockerRegistry
from libs.devstack.stack import Stack, http

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)
# A button that changes something: every submit but signing out and filtering the audit trail.
MUTATING = (
    "//button[@type='submit' and not(normalize-space()='Sign out') and not(normalize-space()='Filter')]"
)


@pytest.fixture(scope="module")
def private_registry(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    password = "pw-" + secrets.token_urlsafe(12)
    registry = DockerRegistry(tmp_path_factory.mktemp("console-registry"), users={"robot": password})
    registry.start()
    try:
        for tag in ("1.0", "1.1"):
            registry.push_image("acme/web", tag, username="robot", password=password)
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("Debian's chromium and chromium-driver are missing: `make deps` installs them")
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: WebDriver, what: str, predicate: object, timeout: float = 60) -> object:
    def probe(d: WebDriver) -> object:
        try:
            return predicate(d)  # type: ignore[operator]
        except StaleElementReferenceException:  # htmx swapped it while we read it
            return False

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(probe, message=what)


def text_of(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def fill(driver: WebDriver, label: str, value: str) -> None:
    """Type into the field whose <label> says `label` (every field has one)."""
    target = driver.find_element(By.XPATH, f"//label[normalize-space()='{label}']").get_attribute("for")
    field = driver.find_element(By.ID, str(target))
    field.clear()
    field.send_keys(value)


def choose(driver: WebDriver, label: str, option: str) -> None:
    target = driver.find_element(By.XPATH, f"//label[normalize-space()='{label}']").get_attribute("for")
    Select(driver.find_element(By.ID, str(target))).select_by_visible_text(option)


def click(driver: WebDriver, text: str) -> None:
    driver.find_element(By.XPATH, f"//*[self::button or self::a][normalize-space()='{text}']").click()


def shot(driver: WebDriver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, min(max(int(height) + 120, 700), 2400))
    driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.set_window_size(width, 900)


def sign_in(driver: WebDriver, console: str, key: str) -> None:
    driver.get(console + "/sign-in")
    fill(driver, "API key", key)
    click(driver, "Sign in")
    wait(driver, "the components page", lambda d: d.current_url.endswith("/components"))


def test_the_whole_flow_in_a_browser(
    stack: Stack, private_registry: DockerRegistry, driver: WebDriver
) -> None:
    console = stack.url("console")
    assert stack.org_key
    driver.get(console + "/sign-in")
    shot(driver, "sign-in")
    sign_in(driver, console, stack.org_key)

    # Infrastructure → Credentials → Container Registries → + Add Registry
    driver.get(console + "/registries")
    click(driver, "+ Add Registry")
    fill(driver, "Registry Display Name", "private registry")
    choose(driver, "Authentication Type", "Basic authentication")
    fill(driver, "Registry Host", private_registry.host)
    fill(driver, "Username", "robot")
    fill(driver, "Password or token", private_registry.users["robot"])
    shot(driver, "registry-new")
    click(driver, "Save")
    wait(driver, "the registry in the list", lambda d: "private registry" in d.page_source)
    card = driver.find_element(By.XPATH, "//li[contains(@class,'registry')][.//h2[.='private registry']]")
    card.find_element(By.CSS_SELECTOR, "input[name=repository]").send_keys("acme/web")
    card.find_element(By.XPATH, ".//button[normalize-space()='Test connection']").click()
    wait(driver, "the test's answer", lambda d: "Connected" in card.text)
    shot(driver, "registries")

    # Components → create a service on it
    driver.get(console + "/components/new")
    fill(driver, "Component Name", "web")
    choose(driver, "Component Type", "Service")
    choose(driver, "Registry", f"private registry ({private_registry.host})")
    fill(driver, "Image", f"{private_registry.host}/acme/web:1.0")
    click(driver, "Create")
    wait(driver, "the component page", lambda d: d.current_url.endswith("/components/web"))
    fill(driver, "Tag", "1.0")
    click(driver, "Deploy")
    wait(driver, "1.0 in development", lambda d: "acme/web:1.0" in text_of(d, "#stage-development dl"))

    # DevOps → External CI: a token, shown once
    click(driver, "External CI")
    fill(driver, "Token name", "github")
    click(driver, "Generate Token")
    wait(driver, "the new token, shown once", lambda d: d.find_elements(By.ID, "new-token"))
    token = str(driver.find_element(By.ID, "new-token").get_attribute("value"))
    assert token.startswith("lfci_")
    assert driver.find_element(By.XPATH, "//button[@data-copy='new-token']").text == "Copy"
    hook = str(driver.find_element(By.ID, "webhook-url").get_attribute("value"))
    shot(driver, "external-ci")

    # CI deploys 1.1 through the webhook; the open page turns it `succeeded` by itself
    driver.get(console + "/projects/default/components/web")
    wait(driver, "the live stream open", lambda d: d.execute_script("return document.body.dataset.live"))
    driver.execute_script("window.__stillTheSamePage = true")
    status, answer = http("POST", hook, token=token, body={"tag": "1.1"})
    assert status == 202, answer
    wait(
        driver,
        "1.1 succeeded in development, live",
        lambda d: (
            "acme/web:1.1" in text_of(d, "#stage-development dl")
            and "succeeded" in text_of(d, "#stage-development .latest")
        ),
    )
    assert driver.execute_script("return window.__stillTheSamePage === true"), "the page was reloaded"
    shot(driver, "component")

    # Promote → staging
    click(driver, "Promote → staging")
    wait(driver, "1.1 in staging", lambda d: "acme/web:1.1" in text_of(d, "#stage-staging dl"))

    # Redeploy the previous image (1.0) to development, from the history (which the live stream may
    # still be swapping as the promotion finishes: found again until the click lands, never twice)
    def redeployed(d: WebDriver) -> bool:
        d.find_element(
            By.XPATH, "//tr[td[2][.='development']][contains(., 'acme/web:1.0')]//button[.='Redeploy']"
        ).click()
        return True

    wait(driver, "the Redeploy button of 1.0 in development", redeployed)
    wait(
        driver,
        "1.0 running in development again",
        lambda d: (
            "acme/web" in text_of(d, "#stage-development dl")
            and "acme/web:1.1" not in text_of(d, "#stage-development dl")
            and "succeeded" in text_of(d, "#stage-development .latest")
        ),
    )

    # the phone's width: the same page, one column
    driver.set_window_size(390, 900)
    driver.save_screenshot(str(SHOTS / "component-phone.png"))
    driver.set_window_size(1280, 900)

    for page, name in (("/components", "components"), ("/dataplanes", "dataplanes"), ("/audit", "audit")):
        driver.get(console + page)
        shot(driver, name)

    # an owner makes a viewer key; the viewer sees nothing that would change anything
    driver.get(console + "/api-keys")
    fill(driver, "Key name", "auditor")
    choose(driver, "Role", "viewer")
    click(driver, "Create API key")
    # The answer page is loaded after the click returns: wait for the key it shows once.
    shown = wait(driver, "the new key shown once", lambda d: d.find_elements(By.ID, "new-key"))
    assert isinstance(shown, list)
    viewer = str(shown[0].get_attribute("value"))
    click(driver, "Sign out")
    sign_in(driver, console, viewer)
    for page in (
        "/components",
        "/registries",
        "/projects/default/components/web",
        "/projects/default/components/web/ci",
        "/dataplanes",
        "/environments",
        "/api-keys",
    ):
        driver.get(console + page)
        assert driver.find_elements(By.XPATH, MUTATING) == [], page
        assert "+ Add Registry" not in driver.page_source


def test_focus_is_visible_and_every_field_is_labelled(stack: Stack, driver: WebDriver) -> None:
    console = stack.url("console")
    assert stack.org_key
    sign_in(driver, console, stack.org_key)
    for page in ("/registries/new", "/components/new", "/api-keys", "/environments", "/audit"):
        driver.get(console + page)
        unlabelled = driver.execute_script(
            "return [...document.querySelectorAll('input:not([type=hidden]),select,textarea')]"
            ".filter(f => !(f.id && document.querySelector('label[for=\"' + f.id + '\"]')))"
            ".map(f => f.name)"
        )
        assert unlabelled == [], (page, unlabelled)
    field = driver.find_element(By.ID, "f-action")
    field.click()
    outline = driver.execute_script("return getComputedStyle(arguments[0]).outlineStyle", field)
    assert outline not in ("none", "")
