"""Fixed sample texts: `SAMPLES` for the Alignment and Saliency pages, `GEOMETRY_TEXTS` for geometry views.

Each sample stresses tokenizers differently (code indentation, long numbers, ZWJ emoji, CJK, unusual
whitespace, combining marks, literal special-token strings), so the two tokenizations of a pair
disagree in instructive ways. Unusual characters are written as escapes so they stay visible here.

    >>> from sra_viz.samples import SAMPLES
    >>> sorted(SAMPLES)[:3]
    ['CJK', 'Code', 'Emoji']
"""

from __future__ import annotations

SAMPLES: dict[str, str] = {
    "Prose": (
        "The old lighthouse keeper climbed the spiral staircase every evening, counting the steps out of "
        "habit. Tonight the count came to one hundred and twelve, one more than it had ever been, and "
        "somewhere below him a door he had never noticed stood slightly ajar."
    ),
    "Code": (
        "def mean(values: list[float]) -> float:\n"
        '    """Average of a non-empty list."""\n'
        "    if not values:\n"
        '        raise ValueError("values is empty")\n'
        "    return sum(values) / len(values)  # O(n)\n"
        "\n"
        'print(f"{mean([1, 2.5, 4]):.2f}")  # -> 2.50\n'
    ),
    "Numbers": (
        "On 2024-03-15 at 09:45, invoice #INV-00981 was paid: $1,234,567.89 (about €1.14M) for 3.5 kg of "
        "saffron at 12% VAT. Call +1 (555) 010-2233 before 31/12/2025, and keep the drift under "
        "3.14159e-10 or 0.000042 mm."
    ),
    "Emoji": (
        "Our family trip \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 to Japan "
        "\U0001f1ef\U0001f1f5 was amazing \U0001f44d\U0001f3fd! We ate \U0001f363\U0001f35c, watched "
        "\u2764\ufe0f\u200d\U0001f525 fireworks \u2728 and rated the trip 1\ufe0f\u20e30\ufe0f\u20e3/10 "
        "\U0001f602."
    ),
    "CJK": (
        "東京は日本の首都で、人口は約1,400万人です。我们明天早上八点去北京看长城。"
        "서울의 가을 하늘은 정말 맑아요. カタカナとひらがなと漢字が一つの文に混ざっています。"
    ),
    "Odd whitespace": (
        "Tabs\tbetween\twords,\u00a0a no-break space, an ideographic\u3000space and a zero\u200bwidth "
        "space.\r\nA Windows line break, then    four spaces,   three more, and a trailing tab.\t\n\n"
        "  Indented after a blank line."
    ),
    "Mixed scripts": (
        "Thai writes without spaces: ภาษาไทยไม่มีช่องว่างระหว่างคำ. Hindi says नमस्ते दुनिया and Arabic "
        "says مرحبا بالعالم, right to left. Combining marks: cafe\u0301, man\u0303ana and "
        "Tie\u0302\u0301ng Vie\u0323\u0302t."
    ),
    "Special-token strings": (
        "A user typed <bos> and <|im_end|> into the chat box, then pasted <|endoftext|> from a forum "
        "post. Here they are plain text, yet a tokenizer that matches special tokens inside text turns "
        "them into control tokens such as </s> or <pad>."
    ),
}

GEOMETRY_TEXTS: list[str] = [
    "The river froze early that winter. Children skated where boats had moored in summer, "
    "and the ferryman spent his mornings sharpening their blades.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen. "
    "It happens mostly in the chloroplasts of leaf cells.",
    "The Peace of Westphalia was signed in 1648. It ended the Thirty Years' War "
    "and shaped ideas of state sovereignty for centuries.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))  # 5",
    "SELECT city, COUNT(*) AS n\nFROM customers\nGROUP BY city\nORDER BY n DESC;",
    "The train leaves at 07:42 from platform 9 and arrives at 11:15. "
    "A return ticket costs $86.40, or $64.80 with a railcard.",
    "Mix 250 g of flour with 2 eggs and 300 ml of milk. Rest the batter for 20 minutes, "
    "then cook thin pancakes in a hot pan.",
    "La lune se levait derrière les collines. Le village dormait déjà, "
    "sauf la boulangère qui préparait le pain du matin.",
    "Der Zug hatte zwanzig Minuten Verspätung. Trotzdem kamen wir pünktlich zum Konzert, "
    "weil es ebenfalls später begann.",
    "今天下午有雨，记得带伞。明天会放晴，适合去公园散步。",
    "週末は友達と山に登りました。頂上からの景色はとても綺麗でした。",
    "Sam: Did you water the plants?\nAlex: Yes, this morning.\nSam: Even the cactus?\n"
    "Alex: Especially the cactus.",
    "Shopping list:\n- 6 eggs\n- 1 loaf of rye bread\n- 2 lemons\n- olive oil",
    "Jupiter is the largest planet in the Solar System. Its Great Red Spot is a storm "
    "wider than the Earth that has been watched for more than 150 years.",
    "To undo the last commit but keep its changes, run `git reset --soft HEAD~1`. "
    "The files stay staged, ready to be committed again.",
    "A prime number has exactly two divisors: 1 and itself. "
    "The sum of the first five primes, 2 + 3 + 5 + 7 + 11, is 28.",
    "She read the letter twice before folding it into her coat pocket. "
    "Whatever it said, she did not mention it at dinner.",
    "Great service and fast delivery! \U0001f44d The only downside: the box arrived a bit dented \U0001f4e6.",
    "The meeting is moved to Thursday at 3 p.m. in room 4B. Please bring the Q3 figures and your laptop.",
    "Water boils at 100 °C at sea level but at about 70 °C on the summit of Everest, "
    "because the air pressure there is roughly a third as high.",
    "const total = items.reduce((sum, x) => sum + x.price, 0);\nconsole.log(`Total: ${total.toFixed(2)}`);",
    "Москва — столица России. Летом в городе проходят фестивали, а зимой работают катки.",
    "The committee approved the budget, although two members abstained. "
    "Funding for the new library was doubled.",
    "If a recipe serves 4 and you need 10 portions, multiply every quantity by 2.5. "
    "So 300 g of rice becomes 750 g.",
]
