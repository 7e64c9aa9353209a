"""The runtime-parameter registry on a real Broker (fake clock, real journal store).

A tiny test component (``tests/parameter_component.py``) stands in for a shovel or federation:
validation refuses before anything is stored, notify/notify_clear follow set/clear, values
survive a restart and are handed to their component whichever registered first.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from tests.parameter_component import Recorder
from warren.amqp.properties import CODEC
from warren.broker.broker import Broker
from warren.broker.definitions import export_definitions, import_definitions
from warren.model.errors import NotFound, PreconditionFailed
from warren.store.journal.store import JournalStore


def make_broker(store: JournalStore | None = None) -> Broker:
    broker = Broker(clock=Clock(), codec=CODEC, store=store)
    if store is None:
        broker.ensure_defaults()
    else:
        store.open()
        broker.recover()
    return broker


def test_set_notify_lookup_clear():
    broker = make_broker()
    rp = broker.runtime_parameters
    comp = Recorder()
    rp.register(comp)
    assert rp.set("/", "test", "a", {"n": 1}) is True
    assert rp.set("/", "test", "a", {"n": 1}) is False      # same value: nothing to tell
    assert rp.set("/", "test", "a", {"n": 2}) is False      # changed, not new
    assert comp.calls == [("set", "/", "a", {"n": 1}), ("set", "/", "a", {"n": 2})]
    other = Recorder("loose")        # accepts anything: shows 1 and true are different values
    other.validate = lambda *args: []
    rp.register(other)
    assert rp.set("/", "loose", "b", {"x": 1}) is True
    assert rp.set("/", "loose", "b", {"x": True}) is False
    assert rp.set("/", "loose", "b", {"x": True}) is False
    assert [c[3] for c in other.calls] == [{"x": 1}, {"x": True}]
    assert rp.lookup("/", "test", "a").as_json() == {
        "value": {"n": 2}, "vhost": "/", "component": "test", "name": "a"}
    assert rp.value("/", "test", "a") == {"n": 2}
    assert rp.value("/", "test", "missing", "dflt") == "dflt"
    rp.clear("/", "test", "a")
    assert comp.calls[-1] == ("clear", "/", "a")
    assert rp.lookup("/", "test", "a") is None
    with pytest.raises(NotFound, match="Parameter does not exist"):
        rp.clear("/", "test", "a")


def test_unknown_component_refused_with_rabbitmq_text():
    broker = make_broker()
    with pytest.raises(PreconditionFailed) as e:
        broker.runtime_parameters.set("/", "shovel", "s", {"src-uri": "amqp://"})
    assert e.value.text == "Validation failed\n\ncomponent shovel not found\n"
    assert broker.runtime_parameters.list() == []


def test_policy_component_is_not_settable_here():
    broker = make_broker()
    with pytest.raises(PreconditionFailed, match="policies may not be set using this method"):
        broker.runtime_parameters.set("/", "policy", "p", {})
    with pytest.raises(PreconditionFailed, match="policies may not be cleared"):
        broker.runtime_parameters.clear("/", "policy", "p")
    with pytest.raises(ValueError):
        broker.runtime_parameters.register(Recorder("policy"))


def test_validation_errors_are_listed_and_nothing_is_stored():
    broker = make_broker()
    comp = Recorder()
    broker.runtime_parameters.register(comp)
    with pytest.raises(PreconditionFailed) as e:
        broker.runtime_parameters.set("/", "test", "a", {"x": 1}, user="alice")
    assert e.value.text == ("Validation failed\n\nunknown key: x\nn must be an integer\n")
    assert comp.users == ["alice"]
    assert comp.calls == [] and broker.runtime_parameters.list() == []


def test_missing_vhost_and_bad_name():
    broker = make_broker()
    broker.runtime_parameters.register(Recorder())
    with pytest.raises(NotFound):
        broker.runtime_parameters.set("nope", "test", "a", {"n": 1})
    with pytest.raises(PreconditionFailed):
        broker.runtime_parameters.set("/", "test", "", {"n": 1})


def test_register_twice_refused():
    broker = make_broker()
    broker.runtime_parameters.register(Recorder())
    with pytest.raises(ValueError, match="already registered"):
        broker.runtime_parameters.register(Recorder())


def test_list_filters_and_vhost_deletion_clears():
    broker = make_broker()
    rp = broker.runtime_parameters
    comp, other = Recorder(), Recorder("other")
    rp.register(comp)
    rp.register(other)
    broker.add_vhost("v2")
    rp.set("/", "test", "b", {"n": 1})
    rp.set("v2", "test", "a", {"n": 2})
    rp.set("v2", "other", "a", {"n": 3})
    assert [(p.vhost, p.component, p.name) for p in rp.list()] == [
        ("/", "test", "b"), ("v2", "other", "a"), ("v2", "test", "a")]
    assert [p.name for p in rp.list(component="test")] == ["b", "a"]
    assert [p.component for p in rp.list(vhost="v2")] == ["other", "test"]
    broker.delete_vhost("v2")
    assert [(p.vhost, p.name) for p in rp.list()] == [("/", "b")]
    assert comp.calls[-1] == ("clear", "v2", "a") and other.calls[-1] == ("clear", "v2", "a")


def test_a_failing_component_notify_is_logged_not_raised(caplog):
    class Broken(Recorder):
        def notify(self, vhost, name, value):
            raise RuntimeError("boom")

    broker = make_broker()
    broker.runtime_parameters.register(Broken())
    assert broker.runtime_parameters.set("/", "test", "a", {"n": 1}) is True
    assert broker.runtime_parameters.value("/", "test", "a") == {"n": 1}
    assert "failed on 'a'" in caplog.text


def test_values_survive_restart_and_are_notified_either_order(tmp_path):
    store = JournalStore(tmp_path / "j")
    broker = make_broker(store)
    broker.runtime_parameters.register(Recorder())
    broker.add_vhost("v")
    broker.runtime_parameters.set("v", "test", "kept", {"n": 7})
    broker.runtime_parameters.set("/", "test", "gone", {"n": 1})
    broker.runtime_parameters.clear("/", "test", "gone")
    store.close()

    # registered before recovery (as the server does): told during recover()
    early = Recorder()
    store = JournalStore(tmp_path / "j")
    broker = Broker(clock=Clock(), codec=CODEC, store=store)
    broker.runtime_parameters.register(early)
    store.open()
    broker.recover()
    assert early.calls == [("set", "v", "kept", {"n": 7})]
    assert [p.as_json() for p in broker.runtime_parameters.list()] == [
        {"value": {"n": 7}, "vhost": "v", "component": "test", "name": "kept"}]
    store.close()

    # registered after recovery: told on registration; unregistered values stay listed
    store = JournalStore(tmp_path / "j")
    broker = make_broker(store)
    assert broker.runtime_parameters.value("v", "test", "kept") == {"n": 7}
    late = Recorder()
    broker.runtime_parameters.register(late)
    assert late.calls == [("set", "v", "kept", {"n": 7})]
    store.close()


def test_definitions_round_trip_and_unknown_component_import():
    broker = make_broker()
    broker.runtime_parameters.register(Recorder())
    broker.runtime_parameters.set("/", "test", "a", {"n": 1})
    defs = export_definitions(broker)
    assert defs["parameters"] == [
        {"value": {"n": 1}, "vhost": "/", "component": "test", "name": "a"}]
    assert export_definitions(broker, "/")["parameters"] == [
        {"value": {"n": 1}, "component": "test", "name": "a"}]

    other = make_broker()
    comp = Recorder()
    other.runtime_parameters.register(comp)
    import_definitions(other, defs)
    assert comp.calls == [("set", "/", "a", {"n": 1})]
    assert set(comp.users) == {None}     # imports act as no user, as RabbitMQ's

    # a RabbitMQ file with a shovel: refused as RabbitMQ does, before anything changed
    fresh = make_broker()
    doc = {"vhosts": [{"name": "new"}], "queues": [{"name": "q", "vhost": "new"}],
           "parameters": [{"value": {"src-uri": "amqp://"}, "vhost": "new",
                           "component": "shovel", "name": "s1"}]}
    with pytest.raises(PreconditionFailed) as e:
        import_definitions(fresh, doc)
    assert e.value.text == ("Validation failed\n\ncomponent shovel not found\n"
                            " (new/shovel/s1)")
    assert "new" not in fresh.vhosts and fresh.runtime_parameters.list() == []


def test_import_refuses_bad_parameter_items_before_changing_anything():
    broker = make_broker()
    broker.runtime_parameters.register(Recorder())
    good = {"value": {"n": 1}, "vhost": "/", "component": "test", "name": "ok"}
    cases = [
        ({"value": {"n": 1}, "vhost": "/", "component": "test"},
         "parameters: an item lacks 'name'"),
        ({"vhost": "/", "component": "test", "name": "x"}, "parameters: an item lacks 'value'"),
        ({**good, "component": 3}, "parameters: 'component' must be a string"),
        ({**good, "vhost": "nowhere"},
         'Please create virtual host "nowhere" prior to importing definitions.'),
        ({**good, "value": {"n": "one"}},
         "Validation failed\n\nn must be an integer\n (//test/ok)"),
        ({**good, "component": "policy"},
         "policies may not be set using this method (//policy/ok)"),
    ]
    for item, text in cases:
        doc = {"queues": [{"name": "q-new", "vhost": "/"}], "parameters": [good, item]}
        with pytest.raises(PreconditionFailed) as e:
            import_definitions(broker, doc)
        assert e.value.text == text
    with pytest.raises(PreconditionFailed, match="'parameters' must be a list of objects"):
        import_definitions(broker, {"parameters": {"a": 1}})
    assert "q-new" not in broker.vhost("/").queues
    assert broker.runtime_parameters.list() == []
