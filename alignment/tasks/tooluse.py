"""A tool-use task family: generated tools with varied JSON Schemas and questions whose gold
call is known by construction.

An application embeds rankact with its own tools; a policy trained only on the calculator and
search learns those two, not tool use. These tasks exercise what an unseen tool asks of the
agent: integers and numbers as numbers, booleans, enums, optional and defaulted parameters,
arrays and nested objects, choosing among several tools, answering without a tool when none
fits, and calling more than one.

| split | tools | questions |
|---|---|---|
| `tools:dev` | six DEV tools (weather, currency, restaurants, calendar, flights, timers) | for training and choosing |
| `tools:test` | six other tools, never trained on nor used to choose (translation, pizza, loans, e-mail, stocks, car rental) | reported once |

Categories per split: `single` (one tool offered, it fits), `choice` (the right one among 2-4),
`none` (tools offered, none fits: answer directly), `multi` (two calls needed). A task's
`metadata` holds `tool_schemas` (what the agent is offered, as JSON Schemas), `gold_calls`
(`[{name, arguments}]`, empty for `none`) and `category`. `calls_match` compares calls by
argument semantics: an omitted optional argument equals its default, 12 equals 12.0 but not
"12", strings match case- and space-insensitively, several calls match as a multiset.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rankact.errors import RankactError

Schema = dict[str, Any]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: Schema
    questions: tuple[Callable[[random.Random], tuple[str, dict[str, Any]]], ...]

    def schema(self) -> dict[str, Any]:
        """The tool as an OpenAI-style function schema: `{name, description, parameters}`."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


def _obj(properties: dict[str, Schema], required: Sequence[str]) -> Schema:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


CITIES = ["Paris", "Tokyo", "Lima", "Oslo", "Nairobi", "Toronto", "Madrid", "Seoul", "Cairo", "Denver"]
CURRENCIES = ["USD", "EUR", "GBP", "JPY"]
CURRENCY_WORDS = {"USD": "US dollars", "EUR": "euros", "GBP": "British pounds", "JPY": "Japanese yen"}
RESTAURANTS = ["Blue Lantern", "Casa Verde", "The Oak Room", "Sakura House", "Little Bistro"]
PEOPLE = ["alice@example.com", "bob@example.com", "chen@example.com", "dana@example.com"]
LANGUAGES = ["French", "German", "Spanish", "Italian"]
PHRASES = ["good morning", "where is the station", "thank you for your help", "the meeting is at noon"]
TOPPINGS = ["mushrooms", "olives", "peppers", "onions", "ham", "pineapple"]
SYMBOLS = [("AAPL", "Apple", "NASDAQ"), ("MSFT", "Microsoft", "NASDAQ"), ("KO", "Coca-Cola", "NYSE"),
           ("IBM", "IBM", "NYSE"), ("BP", "BP", "LSE"), ("HSBA", "HSBC", "LSE")]


# --- DEV tools ----------------------------------------------------------------------------------

def _weather_today(rng: random.Random) -> tuple[str, dict[str, Any]]:
    city = rng.choice(CITIES)
    return f"What's the weather like in {city} today?", {"city": city}


def _weather_days_f(rng: random.Random) -> tuple[str, dict[str, Any]]:
    city, days = rng.choice(CITIES), rng.randint(2, 7)
    return (f"Give me the {days}-day forecast for {city} in Fahrenheit.",
            {"city": city, "unit": "fahrenheit", "days": days})


def _currency(rng: random.Random) -> tuple[str, dict[str, Any]]:
    src, dst = rng.sample(CURRENCIES, 2)
    amount = rng.choice([20, 75, 120, 250, 999.5, 1500])
    return (f"How much is {amount:g} {CURRENCY_WORDS[src]} in {CURRENCY_WORDS[dst]}?",
            {"amount": amount, "from_currency": src, "to_currency": dst})


def _book(rng: random.Random) -> tuple[str, dict[str, Any]]:
    place, size, hour = rng.choice(RESTAURANTS), rng.randint(2, 8), rng.randint(17, 21)
    return (f"Book a table for {size} at {place} at {hour}:00.",
            {"restaurant": place, "party_size": size, "time": f"{hour}:00"})


def _book_outdoor(rng: random.Random) -> tuple[str, dict[str, Any]]:
    place, size, hour = rng.choice(RESTAURANTS), rng.randint(2, 6), rng.randint(12, 14)
    return (f"Can you reserve an outdoor table at {place} for {size} people at {hour}:30?",
            {"restaurant": place, "party_size": size, "time": f"{hour}:30", "outdoor": True})


def _event(rng: random.Random) -> tuple[str, dict[str, Any]]:
    who = rng.sample(PEOPLE, 2)
    day = rng.randint(10, 28)
    return (f"Create a calendar event called 'Project review' on 2027-03-{day} with {who[0]} and {who[1]}.",
            {"title": "Project review", "date": f"2027-03-{day}", "attendees": who})


def _event_reminder(rng: random.Random) -> tuple[str, dict[str, Any]]:
    person, day, minutes = rng.choice(PEOPLE), rng.randint(10, 28), rng.choice([5, 30, 60])
    return (f"Schedule 'Dentist' on 2027-04-{day} for {person}, and remind me {minutes} minutes before.",
            {"title": "Dentist", "date": f"2027-04-{day}", "attendees": [person], "reminder_minutes": minutes})


def _flights(rng: random.Random) -> tuple[str, dict[str, Any]]:
    origin, destination = rng.sample(CITIES, 2)
    adults, children = rng.randint(1, 3), rng.randint(1, 2)
    return (f"Find flights from {origin} to {destination} for {adults} adults and {children} children.",
            {"origin": origin, "destination": destination, "passengers": {"adults": adults, "children": children}})


def _flights_direct(rng: random.Random) -> tuple[str, dict[str, Any]]:
    origin, destination = rng.sample(CITIES, 2)
    return (f"Are there direct flights from {origin} to {destination} for one adult?",
            {"origin": origin, "destination": destination, "passengers": {"adults": 1}, "max_stops": 0})


def _timer(rng: random.Random) -> tuple[str, dict[str, Any]]:
    minutes = rng.choice([3, 10, 25, 45])
    return f"Set a timer for {minutes} minutes.", {"minutes": minutes}


def _timer_label(rng: random.Random) -> tuple[str, dict[str, Any]]:
    minutes, label = rng.choice([8, 12, 20]), rng.choice(["pasta", "tea", "laundry"])
    return f"Start a {minutes}-minute timer labelled {label}.", {"minutes": minutes, "label": label}


DEV_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec("get_weather", "Get the weather forecast for a city.", _obj({
        "city": {"type": "string", "description": "city name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7, "default": 1, "description": "days of forecast"},
    }, ["city"]), (_weather_today, _weather_days_f)),
    ToolSpec("convert_currency", "Convert an amount of money from one currency to another.", _obj({
        "amount": {"type": "number", "description": "the amount to convert"},
        "from_currency": {"type": "string", "enum": CURRENCIES},
        "to_currency": {"type": "string", "enum": CURRENCIES},
    }, ["amount", "from_currency", "to_currency"]), (_currency,)),
    ToolSpec("book_table", "Reserve a table at a restaurant.", _obj({
        "restaurant": {"type": "string"},
        "party_size": {"type": "integer", "minimum": 1},
        "time": {"type": "string", "description": "24-hour time, HH:MM"},
        "outdoor": {"type": "boolean", "default": False},
    }, ["restaurant", "party_size", "time"]), (_book, _book_outdoor)),
    ToolSpec("create_event", "Create a calendar event.", _obj({
        "title": {"type": "string"},
        "date": {"type": "string", "description": "YYYY-MM-DD"},
        "attendees": {"type": "array", "items": {"type": "string"}, "description": "e-mail addresses"},
        "reminder_minutes": {"type": "integer", "default": 15},
    }, ["title", "date", "attendees"]), (_event, _event_reminder)),
    ToolSpec("search_flights", "Search for flights between two cities.", _obj({
        "origin": {"type": "string"},
        "destination": {"type": "string"},
        "passengers": _obj({"adults": {"type": "integer", "minimum": 1},
                            "children": {"type": "integer", "minimum": 0, "default": 0}}, ["adults"]),
        "max_stops": {"type": "integer", "minimum": 0, "default": 1},
    }, ["origin", "destination", "passengers"]), (_flights, _flights_direct)),
    ToolSpec("set_timer", "Start a countdown timer.", _obj({
        "minutes": {"type": "integer", "minimum": 1},
        "label": {"type": "string", "default": "timer"},
    }, ["minutes"]), (_timer, _timer_label)),
)


# --- TEST tools ---------------------------------------------------------------------------------

def _translate(rng: random.Random) -> tuple[str, dict[str, Any]]:
    phrase, language = rng.choice(PHRASES), rng.choice(LANGUAGES)
    return f"Translate '{phrase}' into {language}.", {"text": phrase, "target_language": language}


def _translate_formal(rng: random.Random) -> tuple[str, dict[str, Any]]:
    phrase, language = rng.choice(PHRASES), rng.choice(LANGUAGES)
    return (f"How would I say '{phrase}' politely, in formal {language}?",
            {"text": phrase, "target_language": language, "formal": True})


def _pizza(rng: random.Random) -> tuple[str, dict[str, Any]]:
    size, toppings = rng.choice(["small", "medium", "large"]), rng.sample(TOPPINGS, 2)
    return (f"Order a {size} pizza with {toppings[0]} and {toppings[1]}.",
            {"size": size, "toppings": toppings})


def _pizzas(rng: random.Random) -> tuple[str, dict[str, Any]]:
    quantity, topping = rng.randint(2, 4), rng.choice(TOPPINGS)
    return (f"I need {quantity} large pizzas, each with just {topping}.",
            {"size": "large", "toppings": [topping], "quantity": quantity})


def _loan(rng: random.Random) -> tuple[str, dict[str, Any]]:
    principal, rate, years = rng.choice([150000, 220000, 9000]), rng.choice([3.5, 4.25, 6]), rng.choice([5, 15, 30])
    return (f"What is the monthly payment on a {principal} loan at {rate:g}% a year over {years} years?",
            {"principal": principal, "annual_rate_percent": rate, "years": years})


def _email(rng: random.Random) -> tuple[str, dict[str, Any]]:
    to = rng.choice(PEOPLE)
    return (f"Email {to} with the subject 'Lunch' saying 'See you at noon'.",
            {"to": to, "subject": "Lunch", "body": "See you at noon"})


def _email_cc(rng: random.Random) -> tuple[str, dict[str, Any]]:
    to, cc = rng.sample(PEOPLE, 2)
    return (f"Send {to} an email, subject 'Report', body 'Attached is the report', and copy {cc}.",
            {"to": to, "subject": "Report", "body": "Attached is the report", "cc": [cc]})


def _stock(rng: random.Random) -> tuple[str, dict[str, Any]]:
    symbol, company, exchange = rng.choice(SYMBOLS)
    arguments = {"symbol": symbol} if exchange == "NASDAQ" else {"symbol": symbol, "exchange": exchange}
    return f"What is {company}'s share price ({symbol} on the {exchange})?", arguments


def _car(rng: random.Random) -> tuple[str, dict[str, Any]]:
    city, days, car_class = rng.choice(CITIES), rng.randint(2, 9), rng.choice(["economy", "compact", "suv"])
    return (f"Rent a {car_class} car in {city} for {days} days.",
            {"city": city, "days": days, "car": {"class": car_class}})


def _car_manual(rng: random.Random) -> tuple[str, dict[str, Any]]:
    city, days = rng.choice(CITIES), rng.randint(2, 9)
    return (f"I want a manual compact car in {city} for {days} days.",
            {"city": city, "days": days, "car": {"class": "compact", "automatic": False}})


TEST_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec("translate_text", "Translate text into another language.", _obj({
        "text": {"type": "string"},
        "target_language": {"type": "string", "enum": LANGUAGES},
        "formal": {"type": "boolean", "default": False},
    }, ["text", "target_language"]), (_translate, _translate_formal)),
    ToolSpec("order_pizza", "Order pizzas for delivery.", _obj({
        "size": {"type": "string", "enum": ["small", "medium", "large"]},
        "toppings": {"type": "array", "items": {"type": "string"}},
        "quantity": {"type": "integer", "minimum": 1, "default": 1},
    }, ["size", "toppings"]), (_pizza, _pizzas)),
    ToolSpec("calculate_loan_payment", "Monthly payment of a fixed-rate loan.", _obj({
        "principal": {"type": "number"},
        "annual_rate_percent": {"type": "number"},
        "years": {"type": "integer", "minimum": 1},
    }, ["principal", "annual_rate_percent", "years"]), (_loan,)),
    ToolSpec("send_email", "Send an e-mail.", _obj({
        "to": {"type": "string"},
        "subject": {"type": "string"},
        "body": {"type": "string"},
        "cc": {"type": "array", "items": {"type": "string"}, "default": []},
    }, ["to", "subject", "body"]), (_email, _email_cc)),
    ToolSpec("get_stock_price", "Latest share price of a listed company.", _obj({
        "symbol": {"type": "string", "description": "ticker symbol"},
        "exchange": {"type": "string", "enum": ["NASDAQ", "NYSE", "LSE"], "default": "NASDAQ"},
    }, ["symbol"]), (_stock,)),
    ToolSpec("rent_car", "Rent a car.", _obj({
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 1},
        "car": _obj({"class": {"type": "string", "enum": ["economy", "compact", "suv"]},
                     "automatic": {"type": "boolean", "default": True}}, ["class"]),
    }, ["city", "days", "car"]), (_car, _car_manual)),
)

TOOLS_BY_SPLIT: dict[str, tuple[ToolSpec, ...]] = {"dev": DEV_TOOLS, "test": TEST_TOOLS}
# Questions no offered tool can answer: the agent should answer directly.
NO_TOOL_QUESTIONS = {
    "dev": ["Who wrote the play Romeo and Juliet?", "What is the capital of Canada?", "Tell me a short joke about cats.",
            "How many legs does a spider have?", "What colour do you get by mixing blue and yellow?",
            "Say hello in a friendly way.", "What is the largest planet in the solar system?",
            "Which ocean lies between Africa and Australia?", "What is the opposite of 'ancient'?",
            "Who discovered penicillin?", "What do bees make?", "Spell the word 'necessary' backwards.",
            "How many sides does a hexagon have?", "Which animal is known as the king of the jungle?",
            "What is the freezing point of water in Fahrenheit?", "Give me a synonym for 'happy'.",
            "What is the main ingredient of guacamole?", "In which country are the pyramids of Giza?",
            "What is the plural of 'mouse'?", "Who composed the Four Seasons?"],
    "test": ["Who painted the Mona Lisa?", "What is the boiling point of water in Celsius?",
             "Write a one-line poem about the sea.", "What language is spoken in Brazil?",
             "How many days are there in a leap year?", "Name a mammal that can fly.",
             "What is the chemical symbol for gold?", "Who was the first person to walk on the Moon?",
             "What is the tallest mountain on Earth?", "Which gas do plants take in from the air?",
             "How many continents are there?", "Who wrote 'Pride and Prejudice'?",
             "What is the square shape with four equal sides called?", "Name the primary colours.",
             "What does a thermometer measure?", "Which planet is known as the Red Planet?",
             "What is the currency of Japan called?", "How many strings does a standard guitar have?",
             "Suggest a name for a goldfish.", "What is the longest river in Africa?"],
}
SEEDS = {"dev": 5005, "test": 6006}
CATEGORY_SHARES = (("single", 0.4), ("choice", 0.25), ("none", 0.2), ("multi", 0.15))


@dataclass(frozen=True)
class ToolTask:
    question: str
    category: str
    tools: list[dict[str, Any]]  # the function schemas offered
    gold_calls: list[dict[str, Any]]  # [{name, arguments}]; [] when no tool fits


def tool_tasks(split: str, count: int = 200) -> list[ToolTask]:
    """`count` tasks for a split, categories in fixed shares, from a fixed seed."""
    specs, rng = TOOLS_BY_SPLIT[split], random.Random(SEEDS[split])
    out: list[ToolTask] = []
    seen: set[tuple[str, ...]] = set()  # a question with the same tools offered is asked once
    for category, share in CATEGORY_SHARES:
        wanted = round(count * share) if category != "multi" else count - len(out)
        made = 0
        while made < wanted:
            task = _make(category, specs, rng, split)
            key = (task.question, *sorted(tool["name"] for tool in task.tools))
            if key in seen:
                continue
            seen.add(key)
            out.append(task)
            made += 1
    return out


def _ask(spec: ToolSpec, rng: random.Random) -> tuple[str, dict[str, Any]]:
    question, arguments = rng.choice(spec.questions)(rng)
    return question, {"name": spec.name, "arguments": arguments}


def _make(category: str, specs: Sequence[ToolSpec], rng: random.Random, split: str) -> ToolTask:
    if category == "single":
        spec = rng.choice(specs)
        question, call = _ask(spec, rng)
        return ToolTask(question, category, [spec.schema()], [call])
    if category == "choice":
        offered = rng.sample(list(specs), rng.randint(2, 4))
        question, call = _ask(offered[0], rng)
        rng.shuffle(offered)
        return ToolTask(question, category, [s.schema() for s in offered], [call])
    if category == "none":
        offered = rng.sample(list(specs), rng.randint(1, 3))
        return ToolTask(rng.choice(NO_TOOL_QUESTIONS[split]), category, [s.schema() for s in offered], [])
    first, second = rng.sample(list(specs), 2)
    (q1, c1), (q2, c2) = _ask(first, rng), _ask(second, rng)
    question = f"{q1.rstrip('.?!')}, and also: {q2[0].lower()}{q2[1:]}"
    offered = [first, second, *rng.sample([s for s in specs if s not in (first, second)], 1)]
    rng.shuffle(offered)
    return ToolTask(question, category, [s.schema() for s in offered], [c1, c2])


# --- Checking calls ---------------------------------------------------------------------------

class _WrongType(RankactError):
    """An argument whose JSON type is not its schema's: the call does not match (caught inside
    `call_matches`; a branch of the error tree like every exception class in rankact)."""


def _normalize(value: Any, schema: Schema) -> Any:
    """A comparable form of an argument value under its schema (defaults filled in, numbers as
    floats, strings case- and space-folded); `_WrongType` for a value of the wrong type."""
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            raise _WrongType
        properties = schema.get("properties", {})
        if set(value) - set(properties) or set(schema.get("required", [])) - set(value):
            raise _WrongType  # an argument the tool does not take, or a required one missing
        return {key: _normalize(value.get(key, sub.get("default")), sub) for key, sub in properties.items()
                if key in value or "default" in sub}
    if kind == "array":
        if not isinstance(value, list):
            raise _WrongType
        return [_normalize(item, schema.get("items", {})) for item in value]
    if kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _WrongType  # "12" for a number is the failure this family is about
        if kind == "integer" and float(value) != int(value):
            raise _WrongType
        return float(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _WrongType
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise _WrongType
        return " ".join(value.casefold().split())
    return value


def call_matches(call: dict[str, Any], gold: dict[str, Any], tools: Sequence[dict[str, Any]]) -> bool:
    """One call against one gold call: same tool, arguments equal by meaning under its schema."""
    if call.get("name") != gold["name"]:
        return False
    schema = next((t["parameters"] for t in tools if t["name"] == gold["name"]), None)
    arguments = call.get("arguments")
    if schema is None or not isinstance(arguments, dict):
        return False
    try:
        return _normalize(arguments, schema) == _normalize(gold["arguments"], schema)
    except _WrongType:
        return False


def calls_match(calls: Sequence[dict[str, Any]], gold: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> bool:
    """Predicted calls against gold calls as multisets (order-free); no calls match no gold calls."""
    if len(calls) != len(gold):
        return False
    remaining = list(gold)
    for call in calls:
        match = next((i for i, g in enumerate(remaining) if call_matches(call, g, tools)), None)
        if match is None:
            return False
        remaining.pop(match)
    return True
