"""Jurisdictions: ISO 3166-1 alpha-2 country codes and the groups built on them.

Residency is fail-closed, so the set of codes is closed too: a string that is not an
officially assigned alpha-2 code is never a jurisdiction, and a group expands only to
codes. `EU` (the 27 member states) and `EEA` (EU plus Iceland, Liechtenstein and Norway)
exist in every fleet, whether or not a ResidencyPolicy declares them. Greece is `GR` in
ISO 3166 (the EU's own `EL` is not accepted, to keep one spelling per country).
"""

from __future__ import annotations

from collections.abc import Mapping

ISO_3166_ALPHA2: frozenset[str] = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ
    BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
    CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
    DE DJ DK DM DO DZ
    EC EE EG EH ER ES ET
    FI FJ FK FM FO FR
    GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY
    HK HM HN HR HT HU
    ID IE IL IM IN IO IQ IR IS IT
    JE JM JO JP
    KE KG KH KI KM KN KP KR KW KY KZ
    LA LB LC LI LK LR LS LT LU LV LY
    MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
    NA NC NE NF NG NI NL NO NP NR NU NZ
    OM
    PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA
    RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ
    TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ
    UA UG UM US UY UZ
    VA VC VE VG VI VN VU
    WF WS
    YE YT
    ZA ZM ZW
    """.split()  # noqa: SIM905 - a table reads better than a list
)

EU_MEMBERS: frozenset[str] = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE".split()  # noqa: SIM905
)
EEA_MEMBERS: frozenset[str] = EU_MEMBERS | {"IS", "LI", "NO"}

BUILTIN_GROUPS: Mapping[str, frozenset[str]] = {"EU": EU_MEMBERS, "EEA": EEA_MEMBERS}

ANYWHERE = "*"


def is_country(code: str) -> bool:
    return code in ISO_3166_ALPHA2


def is_group_name(name: str) -> bool:
    """Group names are upper-case words of 2 to 32 letters, digits, `_` or `-`.

    Two-letter names that are countries stay countries: a group cannot shadow one.
    """
    return (
        2 <= len(name) <= 32
        and name[0].isalpha()
        and name.upper() == name
        and all(c.isalnum() or c in "_-" for c in name)
        and name not in ISO_3166_ALPHA2
    )
