"""The layering rules (docs/architecture.md: blueprints → services → models, WeChat only in dingqiao/wechat/),
checked on the source so a later change cannot quietly break them."""
import ast
from pathlib import Path


PACKAGE = Path(__file__).resolve().parent.parent / "dingqiao"


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def modules(folder: str = "") -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def test_only_the_wechat_package_imports_wechatpy():
    offenders = [
        str(p.relative_to(PACKAGE)) for p in modules()
        if any(n.split(".")[0] == "wechatpy" for n in imports_of(p)) and "wechat" not in p.relative_to(PACKAGE).parts[:1]
    ]
    assert offenders == []
    assert any(any(n.startswith("wechatpy") for n in imports_of(p)) for p in modules("wechat"))


def test_services_never_touch_the_request_or_blueprints():
    for path in modules("services"):
        names = imports_of(path)
        assert not {"flask.request", "flask.session", "flask.flash", "flask.render_template"} & names, path
        assert not any("blueprints" in n for n in names), path


def test_models_never_import_services_or_blueprints():
    for path in modules("models"):
        assert not any("services" in n or "blueprints" in n for n in imports_of(path)), path


def test_no_float_money_columns():
    for path in modules("models"):
        source = path.read_text(encoding="utf-8")
        assert "Float" not in source and "Numeric" not in source, path


BLUEPRINTS = PACKAGE / "blueprints"
# Flask-Admin's list views build their own queries: a data view in admin/data/ may override these methods of
# its list machinery with a query — and nothing else in a blueprint may hold one.
FLASK_ADMIN_VIEWS = BLUEPRINTS / "admin" / "data"
FLASK_ADMIN_LIST_METHODS = {"get_query", "get_count_query", "get_list", "get_one", "search_placeholder"}
QUERY_BUILDERS = {"select", "insert", "update", "delete", "text", "exists", "union_all"}
QUERY_METHODS = {"execute", "scalar", "scalars", "query", "scalar_one", "scalar_one_or_none"}


def query_calls(path: Path, allowed_in: frozenset[str] = frozenset()) -> list[str]:
    """Each place ``path`` builds or runs a query: a statement builder (select(…), update(…)…), a session's
    execute/scalar(s), the legacy Model.query, or a primary-key load (db.session.get(…); a bare ``session`` in a
    view is Flask's cookie session, whose .get is no query). Calls inside functions named in ``allowed_in``
    are left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    exempt = {id(node) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef) and fn.name in allowed_in
              for node in ast.walk(fn)}
    found = []
    for node in ast.walk(tree):
        if id(node) in exempt:
            continue
        if isinstance(node, ast.Attribute) and node.attr == "query" and ast.unparse(node.value)[:1].isupper():
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {ast.unparse(node)}")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in QUERY_BUILDERS:
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {func.id}()")
        elif isinstance(func, ast.Attribute) and (
                func.attr in QUERY_METHODS or (func.attr == "get" and ast.unparse(func.value).endswith("db.session"))):
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {ast.unparse(func)}()")
    return found


def test_blueprints_leave_queries_to_the_services():
    offenders = [call for path in modules("blueprints")
                 for call in query_calls(path, FLASK_ADMIN_LIST_METHODS if FLASK_ADMIN_VIEWS in path.parents
                                         else frozenset())]
    assert offenders == []


def test_the_query_finder_sees_each_kind_of_query(tmp_path):
    sample = tmp_path / "view.py"
    sample.write_text("def view():\n    a = db.session.execute(select(User))\n    b = db.session.get(User, 1)\n"
                      "    c = session.scalars(stmt)\n    d = session.get('cart')\n    return User.query.all()\n", encoding="utf-8")
    sample.write_text(sample.read_text(encoding="utf-8") + "def get_query():\n    return select(User)\n",
                      encoding="utf-8")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path
    try:
        calls, listing = query_calls(sample), query_calls(sample, frozenset({"get_query"}))
    finally:
        PACKAGE = saved
    assert sorted(call.split(" ")[1] for call in listing) == [
        "User.query", "db.session.execute()", "db.session.get()", "select()", "session.scalars()"]
    assert len(calls) == len(listing) + 1  # the select() in get_query, allowed only where asked


def blueprint_package(path: Path) -> str | None:
    """The role package a blueprint module belongs to (shop, member, admin…); None for the shared modules."""
    parts = path.relative_to(BLUEPRINTS).parts
    return parts[0] if len(parts) > 1 else None


def imported_blueprint_packages(path: Path) -> set[str]:
    """The blueprint packages ``path`` imports from, relative imports resolved against its own place."""
    here = path.relative_to(PACKAGE.parent).with_suffix("").parts  # ("dingqiao", "blueprints", "shop", "cart")
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = here[:len(here) - node.level] + tuple((node.module or "").split(".") if node.module else ())
        else:
            base = tuple((node.module or "").split("."))
        targets = [base] if node.module else [base + (alias.name,) for alias in node.names]
        for target in targets:
            if target[:2] == ("dingqiao", "blueprints") and len(target) > 2 and target[2] != "common":
                found.add(target[2])
    return found


def test_no_blueprint_package_imports_another():
    """Each role's package stands alone; what two of them share lives in blueprints/common.py."""
    crossings = []
    for path in modules("blueprints"):
        own = blueprint_package(path)
        if own is None and path.name == "__init__.py":
            continue  # blueprints/__init__.py registers every package
        crossings += [f"{path.relative_to(PACKAGE)} → {other}" for other in imported_blueprint_packages(path) - {own}]
    assert crossings == []
    assert {p.name for p in BLUEPRINTS.iterdir() if p.is_dir() and (p / "__init__.py").exists()} >= {
        "shop", "member", "outlet", "factory", "service", "wechat", "admin"}


def test_each_role_package_keeps_its_forms_in_forms_py():
    """Form classes (Flask-WTF) live in the package's forms.py (or, for the admin's many, its forms/ package),
    routes in its other modules."""
    misplaced = []
    for path in modules("blueprints"):
        if path.name == "forms.py" or path.parent.name == "forms" or FLASK_ADMIN_VIEWS in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith("Form") for b in node.bases):
                misplaced.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    assert misplaced == []


SERVICE_VOCABULARY_IMPORTS = ("flask", "flask_login", "flask_wtf", "flask_htmx", "wechatpy", "wechatpayv3")
# WeChat's own result codes: dingqiao/wechat/ turns them into outcomes (paid / not paid / unknown) for services.
WECHAT_CODES = ("SUCCESS", "NOTPAY", "USERPAYING", "PAYERROR", "REFUNDCLOSE", "trade_state", "return_code",
                "result_code", "err_code")


def test_services_speak_neither_flask_nor_wechat():
    for path in modules("services"):
        names = imports_of(path)
        assert not [n for n in names if n.split(".")[0] in SERVICE_VOCABULARY_IMPORTS], path
        source = path.read_text(encoding="utf-8")
        assert not [code for code in WECHAT_CODES if f'"{code}"' in source or f"'{code}'" in source], path


MAX_MODULE_LINES = 400
# Generated or test-only code is not read as the house is: migrations are written once by Alembic, and the
# simulator stands in for WeChat's servers in tests and the demo.
LINE_LIMIT_EXEMPT = ("migrations", "simulator")


def test_no_module_over_400_lines():
    long = [f"{p.relative_to(PACKAGE)}: {n}" for p in modules()
            if not set(LINE_LIMIT_EXEMPT) & set(p.relative_to(PACKAGE).parts)
            and (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]
    assert long == []
