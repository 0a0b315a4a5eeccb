# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""An experiment, not product code: the engine's hot path with its state in C.

It answers one question for issue 9's engine goal (100,000 events/s on one
core): how fast is the same work once the account state lives in C fields
(cdef classes) and the common event shape is decoded without building an
`Event`? It covers what `scorer score --emit alerts` does on the engine
bench's data (page views in the canonical timestamp form; leads and any other
shape go through the product's decoder) and counts alerts, which `run.py`
checks against the product's count. Not covered: shadow ICPs, scores output,
suppression counts, the stream store. See README.md.
"""
from libc.math cimport exp2
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from collections import deque
import orjson
from scorer.events import decode_event as py_decode, url_path
from scorer.enrichment.domains import normalise_domain, lead_account
from scorer.scoring.decision import should_alert

cdef class IcpS:
    cdef double raw, clock, alert_at
    cdef bint has_clock, has_alert
    cdef object alert_tier

cdef class Acc:
    cdef double clock
    cdef bint has_clock
    cdef object last
    cdef list icps
    cdef set ids
    cdef object order

cdef class Ic:
    cdef double half_life, total_weight, w_fit, w_intent, min_total, min_fit
    cdef object excluded, icp

cdef class Fit:
    cdef double static_weight
    cdef bint static_dq
    cdef tuple timed

cdef inline long days_from_civil(long y, long m, long d):
    y -= m <= 2
    cdef long era = (y if y >= 0 else y - 399) // 400
    cdef long yoe = y - era * 400
    cdef long doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    cdef long doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468

cdef inline int dig(str s, Py_ssize_t i):
    cdef Py_UCS4 c = s[i]
    if c < 48 or c > 57:
        return -1
    return <int>c - 48

cdef double parse_z(str s) except? -1.0:
    """'YYYY-MM-DDTHH:MM:SS[.fff]Z' -> epoch seconds; -1 when not that form."""
    cdef Py_ssize_t n = len(s), i
    cdef int k, v
    cdef long y, mo, d, h, mi, se
    cdef double frac = 0.0, scale = 0.1
    if n < 20 or s[n - 1] != u'Z' or s[4] != u'-' or s[7] != u'-' or s[10] != u'T' or s[13] != u':' or s[16] != u':':
        return -1.0
    for i in (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18):
        if dig(s, i) < 0:
            return -1.0
    y = dig(s,0)*1000 + dig(s,1)*100 + dig(s,2)*10 + dig(s,3)
    mo = dig(s,5)*10 + dig(s,6); d = dig(s,8)*10 + dig(s,9)
    h = dig(s,11)*10 + dig(s,12); mi = dig(s,14)*10 + dig(s,15); se = dig(s,17)*10 + dig(s,18)
    if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or se > 59:
        return -1.0
    if n > 20:
        if s[19] != u'.' or n > 27:
            return -1.0
        for i in range(20, n - 1):
            v = dig(s, i)
            if v < 0:
                return -1.0
            frac += v * scale
            scale *= 0.1
    return days_from_civil(y, mo, d) * 86400.0 + h * 3600 + mi * 60 + se + frac

cdef class Spike:
    cdef list ics
    cdef dict fits, accounts, points
    cdef object engine, companies
    cdef public long alerts, scored, unresolved, dups

    def __init__(self, engine, companies):
        self.engine = engine
        self.companies = companies
        self.ics = []
        for icp in engine.icps:
            c = Ic()
            c.half_life = icp.half_life; c.total_weight = icp.total_weight
            c.w_fit = icp.w_fit; c.w_intent = icp.w_intent
            c.min_total = icp.min_total; c.min_fit = icp.min_fit
            c.excluded = icp.excluded; c.icp = icp
            self.ics.append(c)
        self.fits = {}; self.accounts = {}; self.points = {}
        self.alerts = self.scored = self.unresolved = self.dups = 0

    cdef list fit(self, str account):
        cdef list out = <list>self.fits.get(account)
        cdef Fit f
        if out is None:
            out = []
            company = self.companies.get(account)
            for cf in self.engine.company_fits(account, company):
                f = Fit(); f.static_weight = cf.static_weight; f.static_dq = cf.static_disqualified
                f.timed = cf.timed
                out.append(f)
            self.fits[account] = out
        return out

    def run(self, lines):
        cdef double at, window = self.engine.dedup_window, points, raw, intent, weight, fit, total, stamp_d
        cdef Acc acc
        cdef IcpS st
        cdef Ic ic
        cdef Fit f
        cdef Py_ssize_t i, n = len(self.ics)
        cdef bint is_lead, dq, hot
        cdef tuple pts
        for line in lines:
            doc = orjson.loads(line)
            if type(doc) is not dict:
                continue
            event_id = doc.get("event_id"); kind = doc.get("type"); occ = doc.get("occurred_at")
            ok = type(event_id) is str and type(kind) is str and type(occ) is str and event_id and kind
            at = parse_z(occ) if ok else -1.0
            if at < 0:
                ev = py_decode(line)
                event_id, kind, at, account, path, title = ev.event_id, ev.type, ev.at, ev.account, ev.path, ev.title
            else:
                is_lead = kind == "lead_created"
                dom = doc.get("company_domain")
                if is_lead:
                    ev = py_decode(line)  # rare: leads through the reference
                    account, path, title = ev.account, None, ev.title
                else:
                    if dom is not None and type(dom) is not str:
                        ev = py_decode(line)
                    account = normalise_domain(dom) if dom else None
                    if not account:
                        account = None
                    pu = doc.get("page_url")
                    path = url_path(pu) if type(pu) is str or pu is None else py_decode(line).path
                    title = None
            if account is None:
                self.unresolved += 1
                continue
            acc = <Acc>self.accounts.get(account)
            if acc is None:
                acc = Acc(); acc.icps = []; acc.ids = set(); acc.order = deque()
                for i in range(n):
                    st = IcpS(); acc.icps.append(st)
                self.accounts[account] = acc
            if acc.has_clock and at < acc.clock - window:
                continue
            if event_id == acc.last or event_id in acc.ids:
                self.dups += 1
                continue
            if not acc.has_clock or at > acc.clock:
                acc.clock = at; acc.has_clock = True
            acc.last = event_id
            acc.ids.add(event_id)
            order = acc.order
            order.append((at, event_id))
            horizon = acc.clock - window
            while order[0][0] < horizon:
                acc.ids.discard(order.popleft()[1])
            self.scored += 1
            fits = self.fit(account)
            key = (kind, path)
            pts = <tuple>self.points.get(key)
            if pts is None:
                pts = self.points[key] = tuple(icp.event_points(kind, path) for icp in self.engine.icps)
            is_lead = kind == "lead_created"
            for i in range(n):
                ic = <Ic>self.ics[i]; f = <Fit>fits[i]; st = <IcpS>acc.icps[i]
                points = pts[i]
                if is_lead:
                    persona, pp = ic.icp.persona(title)
                    points += pp
                if not st.has_clock:
                    raw = points; st.clock = at; st.has_clock = True
                elif at >= st.clock:
                    raw = st.raw * exp2((st.clock - at) / ic.half_life) + points
                    st.clock = at
                else:
                    raw = st.raw + points * exp2((at - st.clock) / ic.half_life)
                st.raw = raw
                intent = raw if raw < 100.0 else 100.0
                weight = f.static_weight; dq = f.static_dq
                for stamp, tw, twt, must in f.timed:
                    if stamp is not None and at - <double>tw <= <double>stamp <= at:
                        weight += <double>twt
                    elif must:
                        dq = True
                if dq:
                    continue
                fit = 100.0 * weight / ic.total_weight
                total = (ic.w_fit * fit + ic.w_intent * intent) / (ic.w_fit + ic.w_intent)
                hot = total >= ic.min_total and fit >= ic.min_fit and account not in ic.excluded
                if not hot:
                    continue
                tier = ic.icp.tier(total)
                if should_alert(ic.icp, tier, st.clock, st.alert_at if st.has_alert else None, st.alert_tier):
                    st.alert_at = st.clock; st.has_alert = True; st.alert_tier = tier
                    self.alerts += 1
