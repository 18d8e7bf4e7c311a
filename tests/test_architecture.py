"""The layering rules (README "Layout": blueprints → services → models, WeChat only in dingqiao/wechat/),
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
