"""Generate the PDF articles of the faq-agent example knowledge base.

The text of every PDF lives in this script, so the PDFs can be rebuilt and
reviewed like any other source file:

    /work/main/.venv/bin/python examples/faq-agent/tools/make_pdfs.py

Requires reportlab (``pip install reportlab``). Output is deterministic
(reportlab's invariant mode), so re-running the script only changes the PDFs
when the text below changes.
"""

from __future__ import annotations

from pathlib import Path

from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    ListFlowable,
    ListItem,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

rl_config.invariant = 1  # reproducible output (no timestamps / random IDs)

KNOWLEDGE = Path(__file__).resolve().parent.parent / "knowledge"

# Each document: output path (relative to knowledge/), title, subtitle and a
# list of blocks. A block is ("h2", text), ("p", text), ("ul", [items]) or
# ("table", [[cells], ...]) with the first row as header.
DOCUMENTS = [
    {
        "path": "billing/refund-policy.pdf",
        "title": "Orbitly Refund Policy",
        "subtitle": "Applies to Pro and Business subscriptions bought online. Effective 1 September 2025.",
        "blocks": [
            ("h2", "1. Summary"),
            ("p", "We want you to be happy with Orbitly. If an annual plan is not right for you, "
                  "you can get your money back within 30 days. Monthly plans can be cancelled at any "
                  "time and stay active until the end of the month you paid for, so they are not refunded."),
            ("table", [
                ["Purchase", "Refund"],
                ["Annual plan (new purchase or renewal)", "Full refund if requested within 30 days"],
                ["Monthly plan", "No refund for partial months"],
                ["Seats added to an annual plan", "Refund within 30 days if never assigned"],
                ["Duplicate charge or billing error", "Always refunded in full"],
            ]),
            ("h2", "2. Annual plans"),
            ("p", "If you request a refund within 30 days of the initial purchase of an annual plan, or "
                  "within 30 days of an automatic annual renewal, we refund the full amount of that "
                  "charge. After 30 days we do not give refunds, but you can cancel at any time so the "
                  "plan does not renew. We send a renewal reminder email to the Owner 14 days before "
                  "each annual renewal."),
            ("p", "When a full refund of an annual plan is issued, the Workspace moves to the Free plan "
                  "immediately. No data is deleted."),
            ("h2", "3. Monthly plans"),
            ("p", "Monthly plans are not refundable, including for partial months and unused seats. "
                  "When you cancel, your paid features remain available until the end of the current "
                  "billing period and you are not charged again. Credits for seats removed from a "
                  "monthly plan are added to your account balance and used for future invoices; they "
                  "are not paid out to your card."),
            ("h2", "4. Seats added during an annual term"),
            ("p", "Seats added to an annual plan are charged immediately on a prorated basis. If a "
                  "seat was bought by mistake and never assigned to a member, you can ask for a refund "
                  "of that seat within 30 days of the purchase."),
            ("h2", "5. Billing errors"),
            ("p", "Duplicate charges, charges made after a confirmed cancellation, and other billing "
                  "errors are always refunded in full, regardless of the 30-day window."),
            ("h2", "6. How to request a refund"),
            ("ul", [
                "In the app, open Help (?) > Contact support and choose the topic Billing, or email "
                "billing@orbitly.com.",
                "Send the request from the account of the Workspace Owner.",
                "Include the invoice number (it looks like INV-2025-004812).",
            ]),
            ("p", "We process refund requests within 2 business days. The money is returned to the "
                  "original payment method and usually appears within 5 to 10 business days, depending "
                  "on your bank. We cannot send a refund to a different card or account. Any VAT or "
                  "sales tax charged is refunded together with the amount it was charged on."),
            ("h2", "7. Free trials"),
            ("p", "The 14-day Business trial is free and does not require a card, so there is nothing "
                  "to refund. If you choose a paid plan during the trial, the 30-day refund window for "
                  "annual plans starts on the day you pay."),
            ("h2", "8. Chargebacks"),
            ("p", "Please contact us before disputing a charge with your bank. Most issues can be "
                  "solved within a day. While a chargeback is open, the Workspace is placed in "
                  "read-only mode until the dispute is resolved."),
            ("h2", "9. Enterprise"),
            ("p", "Refunds for Enterprise subscriptions are governed by the order form signed with "
                  "Orbitly and not by this policy."),
        ],
    },
    {
        "path": "security/dpa-summary.pdf",
        "title": "Data Processing Addendum: Summary",
        "subtitle": "A plain-language summary of the Orbitly DPA (version 4.1, September 2025). "
                    "The full DPA at orbitly.com/legal/dpa prevails over this summary.",
        "blocks": [
            ("h2", "1. Scope and roles"),
            ("p", "The Data Processing Addendum (DPA) governs how Orbitly Inc. processes personal data "
                  "that customers put into their Workspaces. The customer is the controller of that data "
                  "and Orbitly is the processor. Orbitly processes customer personal data only on the "
                  "customer's documented instructions, which are the Terms of Service, the DPA and the "
                  "customer's use of the product."),
            ("p", "The DPA is part of the Terms of Service and applies automatically to every plan, "
                  "including Free. No signature is needed; a pre-signed copy can be downloaded at "
                  "orbitly.com/legal/dpa. Enterprise customers can negotiate a custom DPA."),
            ("h2", "2. Data covered"),
            ("ul", [
                "Data subjects: the customer's employees, contractors, guests and other users invited "
                "to the Workspace.",
                "Categories of data: names, email addresses, profile photos, job titles, IP addresses, "
                "device information and any personal data contained in tasks, comments and files.",
                "Orbitly does not ask for special categories of personal data, and customers should "
                "not upload them unless they have a legal basis.",
            ]),
            ("h2", "3. Data location and international transfers"),
            ("p", "Customer content is stored in the data region chosen when the Workspace is created: "
                  "United States (Oregon) or European Union (Frankfurt). Transfers of personal data out "
                  "of the EEA, the UK or Switzerland are covered by the EU Standard Contractual Clauses "
                  "(Commission Decision 2021/914, Modules 2 and 3), the UK International Data Transfer "
                  "Addendum and the Swiss amendments."),
            ("h2", "4. Subprocessors"),
            ("p", "The current list of subprocessors is published at orbitly.com/legal/subprocessors. "
                  "Orbitly gives at least 30 days' notice before a new subprocessor starts processing "
                  "customer personal data. The customer may object on reasonable data protection "
                  "grounds during that notice period. If the objection cannot be resolved, the customer "
                  "may terminate the affected service and receive a refund of prepaid fees for the "
                  "remaining term."),
            ("h2", "5. Security measures"),
            ("ul", [
                "Encryption with AES-256 at rest and TLS 1.2 or higher in transit.",
                "SOC 2 Type II report and ISO/IEC 27001 certification, renewed every year.",
                "Annual penetration tests by an independent security firm.",
                "Access to customer data by Orbitly staff only where needed to provide support or "
                "operate the service; all such access is logged.",
                "Background checks and confidentiality agreements for all staff.",
            ]),
            ("h2", "6. Personal data breaches"),
            ("p", "Orbitly notifies the customer of a personal data breach without undue delay and in "
                  "any case within 48 hours of becoming aware of it. The notice describes the nature of "
                  "the breach, the data affected, the likely consequences and the measures taken, so "
                  "the customer can meet its own 72-hour notification duty towards supervisory "
                  "authorities."),
            ("h2", "7. Assistance and data subject requests"),
            ("p", "If Orbitly receives a request from a data subject about a customer's Workspace, it "
                  "forwards the request to the customer without answering it. The product gives "
                  "customers the tools to answer requests themselves: export, correction and deletion "
                  "of data. Orbitly also helps with data protection impact assessments on request."),
            ("h2", "8. Audits"),
            ("p", "Customers on Business and Enterprise can request the SOC 2 Type II report and the "
                  "ISO/IEC 27001 certificate under NDA. Enterprise customers may also carry out one "
                  "audit per year, on site or remotely, at their own cost and with 30 days' notice."),
            ("h2", "9. Return and deletion of data"),
            ("p", "Customers can export their data at any time. When a Workspace is deleted or the "
                  "agreement ends, the data can still be restored for 30 days; after that it is "
                  "permanently deleted and removed from backups within 35 days."),
        ],
    },
    {
        "path": "enterprise/enterprise-onboarding-guide.pdf",
        "title": "Enterprise Onboarding Guide",
        "subtitle": "How Orbitly rolls out the Enterprise plan with your team, from kickoff to "
                    "company-wide adoption.",
        "blocks": [
            ("h2", "1. Who this guide is for"),
            ("p", "This guide is for IT administrators, security teams and project leads at "
                  "organisations on the Orbitly Enterprise plan (50 seats or more). It describes the "
                  "onboarding programme that is included in every Enterprise subscription."),
            ("h2", "2. Your onboarding team"),
            ("ul", [
                "A dedicated Customer Success Manager (CSM), who leads the project and stays your "
                "contact after onboarding.",
                "A Solutions Engineer for identity setup, integrations and data migration.",
                "Your kickoff call is scheduled within 5 business days of signing the order form.",
            ]),
            ("h2", "3. Timeline"),
            ("p", "A typical Enterprise onboarding takes 6 weeks. Large migrations can take longer; "
                  "your CSM agrees the plan with you during kickoff."),
            ("table", [
                ["When", "Phase", "What happens"],
                ["Week 1", "Kickoff", "Goals and success metrics, Workspace Admins, data region"],
                ["Weeks 1-2", "Identity", "Domain verification, SSO via SAML, SCIM provisioning"],
                ["Weeks 2-4", "Migration", "Importers or assisted migration of existing projects"],
                ["Week 4", "Pilot", "One or two teams (20 to 50 people) use Orbitly daily"],
                ["Weeks 5-6", "Rollout", "Company-wide launch and live training"],
                ["Ongoing", "Success", "Quarterly business reviews with your CSM"],
            ]),
            ("h2", "4. Identity: SSO and SCIM"),
            ("p", "Verify your email domains, then connect your identity provider with SSO via SAML "
                  "(ACS URL https://app.orbitly.com/sso/saml/acs). With SCIM provisioning, users are "
                  "created, updated and deactivated automatically; the SCIM base URL is "
                  "https://api.orbitly.com/scim/v2. We recommend turning on Require SSO only after the "
                  "pilot group has signed in successfully."),
            ("h2", "5. Data migration"),
            ("p", "Teams can import from Trello, Asana, Jira Cloud and CSV files themselves. For "
                  "migrations of more than 50,000 tasks, or from Jira Data Center, your Solutions "
                  "Engineer runs an assisted migration and checks the results with you before go-live."),
            ("h2", "6. Training"),
            ("p", "Every Enterprise subscription includes up to 4 live training sessions of 60 "
                  "minutes each, recorded so that new hires can watch them later. Admins can also take "
                  "the free Orbitly Admin certification course at academy.orbitly.com."),
            ("h2", "7. Security and compliance settings"),
            ("ul", [
                "Audit log retention can be configured up to 7 years in Settings > Security > Audit "
                "log > Retention.",
                "Audit events can be streamed to your SIEM through GET /v2/audit-events.",
                "A data region migration between the US and the EU is scheduled in a weekend "
                "maintenance window.",
                "Your custom Data Processing Addendum and the SOC 2 Type II report are provided by "
                "your CSM.",
            ]),
            ("h2", "8. Service level agreement"),
            ("p", "Orbitly commits to 99.9% monthly uptime for the web app, the API and Orbit Sync. "
                  "Scheduled maintenance is announced at least 7 days in advance on status.orbitly.com "
                  "and does not count as downtime. If we miss the target you receive service credits:"),
            ("table", [
                ["Monthly uptime", "Service credit"],
                ["Below 99.9%", "10% of the monthly fee"],
                ["Below 99.0%", "25% of the monthly fee"],
                ["Below 95.0%", "50% of the monthly fee"],
            ]),
            ("p", "Ask your CSM for service credits within 30 days after the end of the affected month."),
            ("h2", "9. Support"),
            ("table", [
                ["Severity", "Example", "First response"],
                ["Severity 1", "Orbitly unavailable or data at risk", "1 hour, 24/7, by phone"],
                ["Severity 2", "A major feature does not work", "4 hours"],
                ["Severity 3", "Minor issue or how-to question", "1 business day"],
            ]),
            ("p", "The support phone number for Enterprise Admins is shown in the app under "
                  "Help (?) > Contact support > Call us."),
            ("h2", "10. Billing"),
            ("p", "Enterprise subscriptions are billed annually by invoice with payment terms of net "
                  "30 days, usually by bank transfer. Unlike the self-serve plans, seats added during "
                  "the term are not charged immediately: they are reconciled in a quarterly true-up "
                  "invoice."),
        ],
    },
]


def _styles() -> dict[str, ParagraphStyle]:
    base = getSampleStyleSheet()
    return {
        "title": ParagraphStyle("OrbTitle", parent=base["Title"], fontSize=20, leading=24,
                                textColor=colors.HexColor("#1B2A4A"), spaceAfter=4 * mm),
        "subtitle": ParagraphStyle("OrbSubtitle", parent=base["Normal"], fontSize=10, leading=13,
                                   textColor=colors.HexColor("#555555"), spaceAfter=6 * mm),
        "h2": ParagraphStyle("OrbH2", parent=base["Heading2"], fontSize=13, leading=16,
                             textColor=colors.HexColor("#1B2A4A"), spaceBefore=5 * mm,
                             spaceAfter=2 * mm),
        "p": ParagraphStyle("OrbBody", parent=base["BodyText"], fontSize=10, leading=14,
                            spaceAfter=2.5 * mm),
        "cell": ParagraphStyle("OrbCell", parent=base["BodyText"], fontSize=9, leading=12),
    }


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _footer(canvas, doc) -> None:
    canvas.saveState()
    canvas.setFont("Helvetica", 8)
    canvas.setFillColor(colors.HexColor("#777777"))
    canvas.drawString(20 * mm, 12 * mm, "Orbitly Inc. - help.orbitly.com")
    canvas.drawRightString(A4[0] - 20 * mm, 12 * mm, f"Page {doc.page}")
    canvas.restoreState()


def build(doc_spec: dict, styles: dict[str, ParagraphStyle]) -> Path:
    out = KNOWLEDGE / doc_spec["path"]
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = SimpleDocTemplate(
        str(out), pagesize=A4, leftMargin=20 * mm, rightMargin=20 * mm,
        topMargin=20 * mm, bottomMargin=20 * mm,
        title=doc_spec["title"], author="Orbitly Inc.", subject="Orbitly Help Center",
    )
    story = [Paragraph(_esc(doc_spec["title"]), styles["title"]),
             Paragraph(_esc(doc_spec["subtitle"]), styles["subtitle"])]
    for kind, content in doc_spec["blocks"]:
        if kind == "h2":
            story.append(Paragraph(_esc(content), styles["h2"]))
        elif kind == "p":
            story.append(Paragraph(_esc(content), styles["p"]))
        elif kind == "ul":
            items = [ListItem(Paragraph(_esc(item), styles["p"]), leftIndent=12) for item in content]
            story.append(ListFlowable(items, bulletType="bullet", start="\u2013", leftIndent=12))
        elif kind == "table":
            rows = [[Paragraph(_esc(cell), styles["cell"]) for cell in row] for row in content]
            table = Table(rows, hAlign="LEFT",
                          colWidths=[(A4[0] - 40 * mm) / len(content[0])] * len(content[0]))
            table.setStyle(TableStyle([
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#E8EDF5")),
                ("GRID", (0, 0), (-1, -1), 0.5, colors.HexColor("#B0B8C8")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]))
            story.extend([table, Spacer(1, 3 * mm)])
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    doc.build(story, onFirstPage=_footer, onLaterPages=_footer)
    return out


def main() -> None:
    styles = _styles()
    for spec in DOCUMENTS:
        print(f"wrote {build(spec, styles)}")


if __name__ == "__main__":
    main()
