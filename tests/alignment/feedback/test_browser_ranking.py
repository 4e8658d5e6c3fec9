"""The ranking page in a real browser (Debian's chromium driven by Playwright) against a
live server: sign in, reorder with the keyboard and by dragging, tie, flag, comment,
submit, and check what the store holds. And markup in model output stays inert text."""
from __future__ import annotations

import shutil

import pytest

from rankact.alignment.feedback.collection.sample_data import make_trajectory, sample_questions
from rankact.alignment.feedback.service import create_app
from rankact.alignment.feedback.service.server import serve_in_thread
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does this)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    yield page
    context.close()


def _sign_in(page, url, token):
    page.goto(url)
    page.fill("#token-input", token)
    page.click("#login-form button[type=submit]")


def _card_ids(page) -> list[str]:
    return page.eval_on_selector_all("#cards .card", "cards => cards.map(c => c.dataset.id)")


def _ranks(page) -> list[str]:
    return page.eval_on_selector_all("#cards .card .rank", "nodes => nodes.map(n => n.textContent)")


def test_rank_with_keyboard_and_drag_then_submit(tmp_path, page):
    store = TrajectoryStore(f"sqlite:///{tmp_path / 'b.db'}")
    for qid, _question, gold, trajectories in sample_questions()[:2]:
        for t in trajectories:
            store.add(t, question_id=qid, gold=gold)
    token = store.create_annotator("alice")
    with serve_in_thread(create_app(store)) as url:
        _sign_in(page, url, "wrong-token")
        page.wait_for_selector("#message.error")
        assert "unknown token" in page.inner_text("#message")

        _sign_in(page, url, token)
        page.wait_for_selector("#cards .card")
        assert page.inner_text("#who-name") == "alice"
        first_question = page.inner_text("#question-text")
        qid = next(q.id for q in store.questions() if q.text == first_question)
        a, b, c = _card_ids(page)
        assert sorted([a, b, c]) == store.trajectory_ids(qid)
        assert _ranks(page) == ["1", "2", "3"]

        # Keyboard: move the last card to the front, then the (new) last card one earlier.
        page.locator(f'.card[data-id="{c}"]').focus()
        page.keyboard.press("Alt+ArrowLeft")
        page.keyboard.press("Alt+ArrowLeft")
        assert _card_ids(page) == [c, a, b]
        assert page.evaluate("document.activeElement.dataset.id") == c  # focus follows the card
        page.locator(f'.card[data-id="{b}"]').focus()
        page.keyboard.press("Shift+ArrowLeft")
        assert _card_ids(page) == [c, b, a]
        page.check(f"#flag-{a}-0")
        page.fill("#comment", "the calculator run is best")
        page.click("#submit")

        # The next question loads; rank it by dragging and with a tie.
        page.wait_for_function("q => document.getElementById('question-text').textContent !== q", arg=first_question)
        assert "Saved" in page.inner_text("#message")
        stored = store.rankings(qid)
        assert [r.order for r in stored] == [[[c], [b], [a]]]
        assert stored[0].annotator == "alice" and stored[0].source == "human"
        assert [(f.trajectory_id, f.step_index) for f in stored[0].flags] == [(a, 0)]
        assert stored[0].comment == "the calculator run is best"

        second_question = page.inner_text("#question-text")
        qid2 = next(q.id for q in store.questions() if q.text == second_question)
        x, y, z = _card_ids(page)
        target = page.locator(f'.card[data-id="{z}"]')
        box = target.bounding_box()
        page.locator(f'.card[data-id="{x}"] .handle').drag_to(
            target, target_position={"x": box["width"] - 10, "y": 40})
        assert _card_ids(page) == [y, z, x]
        page.check(f"#tie-{z}")
        assert _ranks(page) == ["1=", "1=", "3"]
        assert page.inner_text("#order-summary").count("=") == 1
        page.click("#submit")
        page.wait_for_selector("#done:not([hidden])")
        assert page.inner_text("#done-title") == "Nothing left to rank"
        assert [r.order for r in store.rankings(qid2)] == [[[y, z], [x]]]
    assert page.errors == []
    store.close()


def test_markup_in_model_output_renders_as_inert_text(tmp_path, page):
    store = TrajectoryStore(f"sqlite:///{tmp_path / 'x.db'}")
    script = "<script>window.__pwned = 1; alert('script')</script>"
    img = '<img src=x onerror="window.__pwned = 2; alert(\'img\')">'
    long_observation = "Results: " + img + " " + "padding " * 60
    evil = make_trajectory(
        "What does <i>this</i> render as?",
        [{"thought": f"Thinking {img}", "action": "search", "action_input": {"query": script},
          "observation": long_observation},
         {"thought": "short", "action": "search", "action_input": img, "observation": img},
         {"thought": "done", "final_answer": script}],
        final_answer=script,
    )
    plain = make_trajectory("What does <i>this</i> render as?", [{"final_answer": "nothing"}], final_answer="nothing")
    for t in (evil, plain):
        store.add(t, question_id="xss")
    token = store.create_annotator("mallory")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    with serve_in_thread(create_app(store)) as url:
        _sign_in(page, url, token)
        page.wait_for_selector("#cards .card")
        page.click("details.observation summary")  # unfold the long observation too
        page.wait_for_timeout(300)  # give any injected handler (onerror) time to fire
        assert dialogs == []
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.locator("#cards img, #cards script, #question-text i").count() == 0
        assert page.inner_text("#question-text") == "What does <i>this</i> render as?"
        card = page.locator(f'.card[data-id="{evil.id}"]')
        assert card.locator(".final").inner_text().endswith(script)
        assert card.get_by_text(f"Thinking {img}").is_visible()
        assert card.locator(".observation pre").first.is_visible()
        assert img in card.locator(".observation pre").first.inner_text()
        assert script in card.locator("pre.input").first.inner_text()
    assert page.errors == []
    store.close()


def test_api_docs_render_offline(tmp_path, page):
    store = TrajectoryStore(f"sqlite:///{tmp_path / 'd.db'}")
    outside: list[str] = []
    with serve_in_thread(create_app(store)) as url:
        page.on("request", lambda request: None if request.url.startswith(url) else outside.append(request.url))
        page.goto(f"{url}/docs")
        page.get_by_text("/api/rankings").first.wait_for()
        assert page.get_by_text("rankact feedback").first.is_visible()
    assert outside == []
    store.close()


def test_the_page_refuses_a_token_of_another_role_and_forgets_it(tmp_path, page):
    store = TrajectoryStore(f"sqlite:///{tmp_path / 'r.db'}")
    admin = store.create_account("root", "admin")
    with serve_in_thread(create_app(store)) as url:
        _sign_in(page, url, admin)
        page.wait_for_selector("#message.error")
        assert "ranking needs an annotator token" in page.inner_text("#message")
        assert page.evaluate("localStorage.getItem('rankact-token')") is None  # an admin token is not kept
        assert page.is_visible("#login")
    assert page.errors == []
    store.close()


def test_docs_page_renders_under_its_csp(tmp_path, page):
    """/docs carries a Content-Security-Policy (issue 31, N19): Swagger UI must still work under it."""
    store = TrajectoryStore(f"sqlite:///{tmp_path / 'docs.db'}")
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text
            else None)
    with serve_in_thread(create_app(store)) as url:
        response = page.goto(f"{url}/docs")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        page.wait_for_selector(".opblock-summary-path")  # the operations came from /openapi.json
        paths = page.eval_on_selector_all(".opblock-summary-path", "nodes => nodes.map(n => n.textContent)")
        assert "/api/trajectories" in paths
    assert refused == [] and page.errors == []
    store.close()
