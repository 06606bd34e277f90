"""Imports every table module so ``Base.metadata`` is complete (for Alembic and tests)."""

from nurture.auth.models import User
from nurture.campaigns.models import Campaign
from nurture.db import Base
from nurture.delivery.models import Message, MessageContent, SendRateSlot
from nurture.engine.models import CampaignStepList, EngineCursor, Enrollment, StepRun, WebhookDelivery
from nurture.leads.models import Activity, Lead, StageChange, Tag, lead_tags
from nurture.rendering.models import EmailTemplate, EmailTemplateVersion
from nurture.scoring.models import LeadScore, ScoreCap, ScoreEntry, ScoreRule, ScoringSettingsRow
from nurture.segments.models import Segment
from nurture.tracking.models import ApiKey, EngagementEvent, LeadPreferences, ProviderEvent

__all__ = [
    "Activity",
    "ApiKey",
    "Base",
    "Campaign",
    "CampaignStepList",
    "EmailTemplate",
    "EmailTemplateVersion",
    "EngagementEvent",
    "EngineCursor",
    "Enrollment",
    "Lead",
    "LeadPreferences",
    "LeadScore",
    "Message",
    "MessageContent",
    "ProviderEvent",
    "ScoreCap",
    "ScoreEntry",
    "ScoreRule",
    "ScoringSettingsRow",
    "Segment",
    "SendRateSlot",
    "StageChange",
    "StepRun",
    "Tag",
    "User",
    "WebhookDelivery",
    "lead_tags",
]
