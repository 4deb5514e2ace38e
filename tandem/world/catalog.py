"""Product categories, MCC codes and merchants of the world (shared vocabulary of the generator)."""

import numpy as np

# category, median item price (RUB), base return rate, base popularity (log-weight)
CATEGORIES = [
    ("electronics", 4200, 0.03, 0.3),
    ("fashion", 1500, 0.25, 0.6),
    ("shoes", 2400, 0.20, 0.0),
    ("home", 1500, 0.05, 0.3),
    ("kids", 1200, 0.06, -0.3),
    ("beauty", 900, 0.03, 0.1),
    ("sports", 2500, 0.07, -0.4),
    ("auto", 1800, 0.04, -0.6),
    ("books", 500, 0.02, -0.8),
    ("grocery", 600, 0.01, -0.2),
    ("luxury", 6500, 0.08, -1.6),
    ("gaming", 2500, 0.05, -1.4),
]
CATEGORY_NAMES = np.array([c[0] for c in CATEGORIES])
CATEGORY_PRICE = np.array([c[1] for c in CATEGORIES], dtype=float)
CATEGORY_RETURN = np.array([c[2] for c in CATEGORIES])
CATEGORY_BASE = np.array([c[3] for c in CATEGORIES])
CAT = {name: i for i, name in enumerate(CATEGORY_NAMES)}

# mcc, group, median amount (RUB), base log-weight, merchants
MCCS = [
    (5411, "groceries", 650, 1.8, ["Pyaterochka", "Magnit", "Perekrestok", "Lenta", "Auchan", "VkusVill"]),
    (5812, "restaurants", 1800, -0.4, ["Teremok", "Shokoladnitsa", "Tanuki", "Il Patio"]),
    (5814, "fast_food", 450, 0.4, ["Vkusno i tochka", "KFC", "Burger King", "Subway"]),
    (5541, "fuel", 1900, 0.1, ["Lukoil", "Gazpromneft", "Rosneft", "Tatneft"]),
    (5912, "pharmacy", 700, -0.1, ["Rigla", "36.6", "Aptechnaya set", "Zdorov.ru"]),
    (5732, "electronics", 9000, -1.2, ["M.Video", "Eldorado", "DNS", "Citilink"]),
    (5651, "clothing", 3500, -0.3, ["Gloria Jeans", "Sportmaster", "Ostin", "Lamoda"]),
    (4111, "transport", 60, 0.9, ["Moscow Metro", "Mosgortrans", "RZD", "Aeroexpress"]),
    (4814, "telecom", 550, -0.6, ["MTS", "Beeline", "MegaFon", "Tele2"]),
    (4900, "utilities", 3500, -0.9, ["Mosenergosbyt", "ZhKH payment", "Rostelecom"]),
    (6011, "cash", 5000, -0.6, ["ATM"]),
    (7995, "betting", 1000, -4.0, ["Fonbet", "Liga Stavok", "Winline", "BetCity"]),
    (5999, "misc", 1200, 0.0, ["Leroy Merlin", "IKEA", "Detsky Mir", "Letual"]),
    (5399, "general", 900, -0.5, ["Fix Price", "Svetofor", "Galamart"]),
]
MARKETPLACE_MERCHANT = "Marketplace"
MARKETPLACE_MCC = 5399
MCC_CODES = np.array([m[0] for m in MCCS], dtype=np.int32)
MCC_AMOUNT = np.array([m[2] for m in MCCS], dtype=float)
MCC_BASE = np.array([m[3] for m in MCCS])
MCC = {m[1]: i for i, m in enumerate(MCCS)}
MERCHANTS = [MARKETPLACE_MERCHANT] + [name for m in MCCS for name in m[4]]
MERCHANT_FIRST = np.cumsum([1] + [len(m[4]) for m in MCCS])[:-1]  # index of each MCC's first merchant
MERCHANT_COUNT = np.array([len(m[4]) for m in MCCS])

CAMPAIGNS = [
    # id, name, product (a key of the offer catalog, tandem/offers/catalog.toml), channel, months before
    # the snapshot: one historic campaign per product
    (1, "Installments at checkout: 0% for 3 months", "installment_plan", "sms", 10),
    (2, "Cashback card: 5% in your favourite marketplace categories", "cashback_card", "push", 9),
    (3, "Savings deposit 7%", "deposit", "sms", 7),
    (4, "Insurance for cross-border parcels", "cross_border_insurance", "email", 6),
    (5, "500 RUB off at the marketplace, with the bank", "marketplace_promo", "push", 4),
]
# the latest wave: each contacted client was offered one product, drawn at random (the held-out wave)
TEST_WAVE = [(10 + i, f"Test wave: {name}", product, "push", 2) for i, (_, name, product, _, _) in enumerate(CAMPAIGNS)]
