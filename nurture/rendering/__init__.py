"""Email templates: sources, the sandbox, CSS inlined once per template version, links, plain text, previews.

Typical use::

    renderer = EmailRenderer(EmailTemplateLoader(FileTemplateSource(directory)))
    compiled = renderer.compile("welcome.html")          # once per batch
    email = renderer.render(compiled, lead=lead, sender=sender, now=clock.now(), message_id=id, urls=urls)

Every failure of a template, at compile or render time, is a ``TemplateProblem`` naming the template and line.
Templates stored in the database (``nurture.rendering.stored``) override the files of the same name.
"""

from nurture.rendering.compiler import CompiledEmail, RenderedEmail
from nurture.rendering.context import LeadView, SenderView, lead_view, sample_lead
from nurture.rendering.errors import TemplateProblem, TemplateProblems
from nurture.rendering.inline import inline_css
from nurture.rendering.links import LinkOptions, MessageUrls, SignedTrackingUrls, TrackingUrls
from nurture.rendering.renderer import (
    EmailRenderer,
    check_templates,
    default_renderer,
    is_email,
    is_transactional,
    preview_email,
    render_email,
)
from nurture.rendering.sandbox import RenderLimits
from nurture.rendering.sources import (
    DictTemplateSource,
    EmailTemplateLoader,
    FileTemplateSource,
    TemplateSource,
    default_template_directory,
)
from nurture.rendering.stored import (
    SavedTemplate,
    StoredTemplateSource,
    get_template_version,
    save_template,
    stored_templates,
    template_history,
    template_loader,
)
from nurture.rendering.text import text_from_html

__all__ = [
    "CompiledEmail",
    "DictTemplateSource",
    "EmailRenderer",
    "EmailTemplateLoader",
    "FileTemplateSource",
    "LeadView",
    "LinkOptions",
    "MessageUrls",
    "RenderLimits",
    "RenderedEmail",
    "SavedTemplate",
    "SenderView",
    "SignedTrackingUrls",
    "StoredTemplateSource",
    "TemplateProblem",
    "TemplateProblems",
    "TemplateSource",
    "TrackingUrls",
    "check_templates",
    "default_renderer",
    "default_template_directory",
    "get_template_version",
    "inline_css",
    "is_email",
    "is_transactional",
    "lead_view",
    "preview_email",
    "render_email",
    "sample_lead",
    "save_template",
    "stored_templates",
    "template_history",
    "template_loader",
    "text_from_html",
]
