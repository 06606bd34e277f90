"""Email throughput: the full per-recipient pipeline, from a lead to a no-op backend, against a bare Jinja render
and against render-then-premailer.

The template is tests/fixtures/templates/bench_newsletter.html (about 11 KB of source, 43 CSS rules, a media
query, conditionals between table rows, two loops, 23 links; about 20 KB of HTML and 4 KB of text once
rendered). Each of 10,000 made-up leads gets a different name, company, temperature, time zone, locale and
product list.

- pipeline, per email, everything the sending process does between a lead and a backend except talking to
  the database:
  1. ``lead_view`` of the lead;
  2. ``EmailRenderer.render`` on the compiled email: sandboxed HTML render with signed click tracking, UTM
     parameters, the open pixel, signed unsubscribe, preferences and view-online URLs, the plain-text part,
     subject and preheader;
  3. ``compose_email`` (headers, List-Unsubscribe, provider metadata, and the compliance check it runs: on the
     cheap per-message facts, since the compiled template proves its footer, see nurture/rendering/footer.py);
  4. the outbox row's content: ``envelope()`` and the link list, as the engine's message writer stores them;
  5. the dispatcher's gate minus its database query: ``marketing_problems`` on the email, which
     ``clear_for_sending`` runs again before anything may leave, on the composed email handed over in
     process (nurture/delivery/handoff.py), as the engine's own dispatcher gets it;
  6. the backend: a no-op ``Mailer`` whose connection reports every email sent. (``MailConnection.send`` only
     takes emails cleared in the gate's transaction, so the bench calls the connection's ``_deliver``.)
  Not included: the INSERTs of message rows and contents, the claim, the suppression query, the UPDATE of
  results and the activity rows (batched, see docs/delivery.md), and building MIME (a no-op backend builds
  none).
- ceiling (a): the same template, CSS inlined once, rendered by a plain (unsandboxed) Jinja environment with
  autoescape, for contexts built beforehand: the least any per-recipient render can cost. No text part, no
  links, no tokens, no composing.
- naive (b): the same bare render, then ``premailer.transform`` on every email; measured on 100 emails. It
  does none of the pipeline's other work, so the ratio to it understates the gain.

Figures are emails per second of CPU time of this process (one core). The pipeline and the ceiling are
measured in alternating rounds so that load from elsewhere on the machine hits both alike; so is a
render-only loop (steps 1-2), which splits the pipeline's time between rendering and delivery's share.

Run: ``.venv/bin/python -m bench.render``
"""

from __future__ import annotations

import logging
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
from premailer import Premailer

from nurture.delivery.compliance import marketing_problems
from nurture.delivery.compose import compose_email
from nurture.delivery.mailbox import Mailbox
from nurture.delivery.mailer import DeliveryResult, MailConnection, Mailer, Outcome
from nurture.delivery.outgoing import OutgoingEmail
from nurture.delivery.settings import BackendName, DeliverySettings
from nurture.rendering import EmailRenderer, EmailTemplateLoader, FileTemplateSource, LinkOptions, SignedTrackingUrls
from nurture.rendering.assemble import assemble
from nurture.rendering.context import PREVIEW_URLS, SenderView, build_context, lead_view
from nurture.rendering.filters import FILTERS
from nurture.rendering.inline import inline_tree, parse_document, serialize_document
from nurture.rendering.protect import SourceBuilder, protect, restore
from nurture.tracking.tokens import TokenSigner

TEMPLATES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "templates"
TEMPLATE = "bench_newsletter.html"
EMAILS = 10_000
NAIVE_SAMPLE = 100
ROUNDS = 5
TARGET_SHARE_OF_CEILING = 0.70
TARGET_TIMES_NAIVE = 50.0
NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

FIRST_NAMES = ["Ada", "Zoë", 'Jean "JJ"', "Ōta", "Brontë", "Renée", "O'Brien", "Miguel", "", "Åsa", "<b>Bob</b>"]
COMPANIES = ["Acme & Sons", "Ütopia GmbH", None, "Les Éditions <Nord>", "Kōgyō KK", "Smith, Jones & Co"]
ZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "Europe/Berlin", None, "Nowhere/Invalid"]
LOCALES = ["en_US", "fr_FR", "de_DE", "es_ES", "en_GB", None]
TEMPERATURES = ["cold", "warm", "hot"]
SENDER = SenderView("Northwind Outfitters", "news@shop.example.com", "12 Harbour Road, Bristol BS1 4XX, UK")
DELIVERY = DeliverySettings(
    backend=BackendName.FILE,
    sender=Mailbox(SENDER.email, SENDER.name),
    postal_address=SENDER.postal_address,
    list_id="Northwind news <news.shop.example.com>",
    unsubscribe_mailto="unsubscribe@shop.example.com",
)


class NullConnection(MailConnection):
    def _deliver(self, emails: list[OutgoingEmail]) -> list[DeliveryResult]:
        return DeliveryResult.for_all(emails, Outcome.SENT, provider_message_id="null")


class NullMailer(Mailer):
    """A backend that sends nothing and reports success."""

    name = "null"
    send_rate = 1e9

    def connect(self) -> NullConnection:
        return NullConnection()


def make_leads(count: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    leads = []
    for number in range(count):
        leads.append(
            {
                "id": 1000 + number,
                "email": f"lead{number}@example.com",
                "first_name": rng.choice(FIRST_NAMES) or None,
                "company": rng.choice(COMPANIES),
                "country": rng.choice(["France", "Germany", None, "Japan"]),
                "timezone": rng.choice(ZONES),
                "locale": rng.choice(LOCALES),
                "temperature": rng.choice(TEMPERATURES),
                "score": rng.randint(0, 90),
                "tags": ["customer"],
                "attributes": {"last_order": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"}
                if number % 3
                else {},
            }
        )
    return leads


def make_campaign(rng: random.Random) -> dict[str, Any]:
    products = [
        {
            "name": f"Product {index} – {rng.choice(['Jacket', 'Boots', 'Pack', 'Fleece'])}",
            "url": f"https://shop.example.com/p/{index}?colour={rng.choice(['red', 'blue', 'sand'])}",
            "image": f"https://cdn.example.com/p/{index}.jpg",
            "description": "Light, warm and ready for the wet months, with taped seams & a two-way zip.",
            "price": f"€{rng.randint(30, 300)}",
            "old_price": f"€{rng.randint(301, 400)}" if index % 2 else None,
            "badge": "New" if index == 0 else None,
        }
        for index in range(6)
    ]
    events = [
        {"date": "2026-03-0" + str(day), "city": city, "name": f"Repair café in {city}"}
        for day, city in ((4, "Bristol"), (11, "Leeds"), (18, "Lyon"))
    ]
    return {
        "title": "Spring picks",
        "code": "SPRING26",
        "free_shipping_until": "2026-03-22",
        "products": products,
        "events": events,
    }


def inlined_source(renderer: EmailRenderer, name: str) -> str:
    """The template with its CSS inlined once and nothing else: what a bare render renders."""
    assembled = assemble(renderer.html_environment, renderer.loader.find, name)
    protected = protect(assembled.document)
    tree, keep_doctype = parse_document(protected.html)
    inline_tree(tree)
    builder = SourceBuilder()
    restore(serialize_document(tree, keep_doctype), protected.tokens, builder, check=True)
    return builder.source()


def cpu_rate(work: Callable[[int], None], count: int) -> float:
    started = time.process_time()
    work(count)
    elapsed = time.process_time() - started
    return count / elapsed if elapsed else float("inf")


def main() -> None:
    logging.getLogger("cssutils").setLevel(logging.CRITICAL)
    renderer = EmailRenderer(EmailTemplateLoader(FileTemplateSource(TEMPLATES)))
    compiled = renderer.compile(TEMPLATE)
    urls = SignedTrackingUrls("https://nurture.example.com", TokenSigner(["bench-key-" + "x" * 32]))
    options = LinkOptions(utm={"utm_source": "nurture", "utm_medium": "email", "utm_campaign": "spring"})
    rng = random.Random(11)
    leads = make_leads(EMAILS)
    campaigns = [make_campaign(rng) for _ in range(8)]
    connection = NullMailer().connect()
    assert isinstance(connection, NullConnection)

    bare_environment = jinja2.Environment(autoescape=True)
    bare_environment.filters.update(FILTERS)
    bare = bare_environment.from_string(inlined_source(renderer, TEMPLATE))
    # For the record: the same bare render in the sandbox.
    sandboxed = renderer.html_environment.from_string(inlined_source(renderer, TEMPLATE))
    bare_contexts = [
        build_context(lead_view(lead), sender=SENDER, now=NOW, urls=PREVIEW_URLS, campaign=campaigns[index % 8])
        for index, lead in enumerate(leads)
    ]
    sink: list[Any] = []

    def render(index: int) -> Any:
        return renderer.render(
            compiled,
            lead=lead_view(leads[index]),
            sender=SENDER,
            now=NOW + timedelta(seconds=index),
            campaign=campaigns[index % len(campaigns)],
            message_id=500_000 + index,
            urls=urls,
            options=options,
        )

    def pipeline(count: int, offset: int = 0) -> None:
        for index in range(offset, offset + count):
            rendered = render(index)
            lead = leads[index]
            email = compose_email(
                rendered,
                settings=DELIVERY,
                message_id=500_000 + index,
                lead_id=lead["id"],
                to_address=lead["email"],
                to_name=lead["first_name"],
                unsubscribe_url=rendered.unsubscribe_url,
                campaign="spring-picks",
                custom_args={"nurture_step": "send-1"},
            )
            sink.append((email.subject, email.html, email.text, email.envelope(), list(email.links) or None))
            if marketing_problems(email):
                raise AssertionError(f"the gate would refuse message {email.message_id}")
            sink.append(connection._deliver([email]))
            sink.clear()

    def render_only(count: int, offset: int = 0) -> None:
        for index in range(offset, offset + count):
            sink.append(render(index))
            sink.clear()

    def bare_render(count: int, offset: int = 0) -> None:
        for index in range(offset, offset + count):
            sink.append(bare.render(bare_contexts[index]))
            sink.clear()

    def sandboxed_render(count: int, offset: int = 0) -> None:
        for index in range(offset, offset + count):
            sink.append(sandboxed.render(bare_contexts[index]))
            sink.clear()

    def naive(count: int) -> None:
        for index in range(count):
            html = bare.render(bare_contexts[index])
            Premailer(html, allow_network=False, cssutils_logging_level=logging.CRITICAL).transform()

    pipeline(200)  # warm-up: caches, first-time code paths
    render_only(200)
    bare_render(200)
    chunk = EMAILS // ROUNDS
    pipeline_rates, render_rates, bare_rates, sandboxed_rates = [], [], [], []
    for round_number in range(ROUNDS):
        offset = round_number * chunk
        pipeline_rates.append(cpu_rate(lambda count, o=offset: pipeline(count, o), chunk))
        bare_rates.append(cpu_rate(lambda count, o=offset: bare_render(count, o), chunk))
        render_rates.append(cpu_rate(lambda count, o=offset: render_only(count, o), chunk // 2))
        sandboxed_rates.append(cpu_rate(lambda count, o=offset: sandboxed_render(count, o), chunk // 2))
    naive_rate = cpu_rate(naive, NAIVE_SAMPLE)

    full = statistics.median(pipeline_rates)
    rendering = statistics.median(render_rates)
    ceiling = statistics.median(bare_rates)
    sample = render(1)
    share = full / ceiling
    times_naive = full / naive_rate
    print(f"Template {TEMPLATE}: {len(compiled.links.static)} static links, rendered HTML "
          f"{len(sample.html) / 1024:.1f} KB, text {len(sample.text) / 1024:.1f} KB, "
          f"{len(sample.links)} link targets")  # fmt: skip
    print(f"{EMAILS} emails in {ROUNDS} rounds, emails/s per core (CPU time), median of rounds:")
    print(f"  full pipeline (lead to no-op backend):           {full:8.0f}/s  ({1000 / full:.3f} ms/email)")
    print(f"    of which rendering (lead view + render):       {rendering:8.0f}/s  ({1000 / rendering:.3f} ms/email)")
    delivery_ms = 1000 / full - 1000 / rendering
    print(f"    of which compose, row content, gate, backend:            ({delivery_ms:.3f} ms/email)")
    print(f"  (a) ceiling, bare Jinja render, CSS inlined once: {ceiling:8.0f}/s  ({1000 / ceiling:.3f} ms/email)")
    sandboxed_rate = statistics.median(sandboxed_rates)
    print(f"      (the same bare render in the sandbox:          {sandboxed_rate:8.0f}/s)")
    print(f"  (b) naive, render then premailer ({NAIVE_SAMPLE} emails): {naive_rate:8.1f}/s  "
          f"({1000 / naive_rate:.1f} ms/email)")  # fmt: skip
    print(f"Rendering alone = {rendering / ceiling:.0%} of the ceiling")
    print(f"Pipeline = {share:.0%} of the ceiling (target >= {TARGET_SHARE_OF_CEILING:.0%}): "
          f"{'met' if share >= TARGET_SHARE_OF_CEILING else 'not met'}")  # fmt: skip
    print(f"Pipeline = {times_naive:.0f}x the naive baseline (target >= {TARGET_TIMES_NAIVE:.0f}x): "
          f"{'met' if times_naive >= TARGET_TIMES_NAIVE else 'not met'}")  # fmt: skip


if __name__ == "__main__":
    main()
