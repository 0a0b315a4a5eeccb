"""Account identity: normalised company domains and lead resolution."""

from __future__ import annotations

from scorer.native import is_compiled

# Free-mail providers: a lead from one of these cannot be tied to a company
# by its email alone. Kept short and explicit; extend by pull request.
FREE_MAIL_DOMAINS: frozenset[str] = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "hotmail.co.uk",
        "live.com",
        "msn.com",
        "yahoo.com",
        "yahoo.co.uk",
        "ymail.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "proton.me",
        "protonmail.com",
        "pm.me",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "mail.com",
        "mail.ru",
        "yandex.ru",
        "yandex.com",
        "zoho.com",
        "fastmail.com",
        "hey.com",
        "qq.com",
        "163.com",
        "126.com",
        "naver.com",
        "tutanota.com",
        "duck.com",
    }
)


# A memo of two generations: when the young one is full it becomes the old one,
# whose entries move back on use, so the domains in play stay while the rest go.
# (Cleared whole at 50,000, it was emptied again and again by the bench's 62,222
# spellings, and 9 % of events normalised afresh: callgrind.) At most 2 x 65,536
# entries, about 28 MB.
MEMO_GENERATION = 65_536
_COMPILED = is_compiled(__file__)
_normalised: dict[str, str] = {}
_normalised_old: dict[str, str] = {}


def normalise_domain(domain: str) -> str:
    """Lower-case, without a leading ``www.`` or a trailing dot."""
    global _normalised, _normalised_old
    if _plain(domain):  # the usual spelling: no memo look-up (a cache miss, 4 % of a worker)
        return domain
    # The same few thousand domains arrive again and again on the hot path; the
    # result never depends on the memo's contents.
    cached = _normalised.get(domain)
    if cached is not None:
        return cached
    result = _normalised_old.get(domain)
    if result is None:
        result = domain.strip().lower().rstrip(".")
        if result.startswith("www."):
            result = result[4:]
    if len(_normalised) >= MEMO_GENERATION:
        _normalised_old = _normalised
        _normalised = {}
    _normalised[domain] = result
    return result


def _plain(domain: str) -> bool:
    """Already normalised: printable ASCII without upper case, whitespace, a
    leading ``www.`` or a trailing dot. Anything else takes the long way, which
    gives these back unchanged (a property test checks, in both builds)."""
    if not _COMPILED:  # str methods, C code (a loop over characters would be Python)
        return (
            domain.isascii()
            and domain.islower()  # which also wants a letter: else the long way
            and domain.isprintable()
            and " " not in domain
            and domain[-1] != "."
            and not domain.startswith("www.")
        )
    # Compiled: one loop over C characters, cheaper than those calls.
    length = len(domain)
    if length == 0 or domain[length - 1] == ".":
        return False
    if length >= 4 and domain[0] == "w" == domain[1] == domain[2] and domain[3] == ".":
        return False
    for ch in domain:  # noqa: SIM110 (a C loop when compiled, not a generator)
        if ch <= " " or ch > "~" or "A" <= ch <= "Z":
            return False
    return True


def lead_account(company_domain: str | None, email: str | None) -> str | None:
    """The account a lead belongs to, or None when it cannot be resolved.

    The lead's own `company_domain` wins; else the email's domain, unless it
    is a free-mail provider.
    """
    if company_domain:
        normalised = normalise_domain(company_domain)
        if normalised:
            return normalised
    if not email:
        return None
    _, at, host = email.rpartition("@")
    if not at or not host:
        return None
    normalised = normalise_domain(host)
    if not normalised or normalised in FREE_MAIL_DOMAINS:
        return None
    return normalised
