"""Structured output's types on the Flink side: a result ROW as ``DataType``, type information and
values, converted from and to the package's own type tree (``flink_llm_udf._structured``)."""

from __future__ import annotations

import datetime
import decimal
from typing import Any

from pyflink.common import Row, Types
from pyflink.common.typeinfo import TypeInformation
from pyflink.table import DataTypes
from pyflink.table import types as flink_types
from pyflink.table.types import DataType

from .._errors import InvalidOptionError
from .._structured import FlinkField, FlinkType, json_schema_of, parse_type_string

__all__ = ["ResultType", "result_type"]

_INTEGER_BITS = {"TINYINT": 8, "SMALLINT": 16, "INT": 32, "BIGINT": 64}

_ATOMIC: dict[type, str] = {
    flink_types.BooleanType: "BOOLEAN",
    flink_types.TinyIntType: "TINYINT",
    flink_types.SmallIntType: "SMALLINT",
    flink_types.IntType: "INT",
    flink_types.BigIntType: "BIGINT",
    flink_types.FloatType: "FLOAT",
    flink_types.DoubleType: "DOUBLE",
    flink_types.DateType: "DATE",
}


def flink_type_of(data_type: DataType) -> FlinkType:
    """The type tree of a PyFlink ``DataType`` (``DataTypes.ROW([...])`` and what it nests)."""
    nullable = bool(getattr(data_type, "_nullable", True))
    if isinstance(data_type, flink_types.RowType):
        fields = tuple(  # PyFlink's RowField says "..." when it was given no description
            FlinkField(
                field.name,
                flink_type_of(field.data_type),
                None if field.description in ("", "...") else field.description,
            )
            for field in data_type.fields
        )
        return FlinkType("ROW", nullable, fields=fields)
    if isinstance(data_type, flink_types.ArrayType):
        return FlinkType("ARRAY", nullable, children=(flink_type_of(data_type.element_type),))
    if isinstance(data_type, flink_types.MapType):
        children = (flink_type_of(data_type.key_type), flink_type_of(data_type.value_type))
        return FlinkType("MAP", nullable, children=children)
    if isinstance(data_type, flink_types.VarCharType):
        if data_type.length >= 0x7FFFFFFF:
            return FlinkType("STRING", nullable)
        return FlinkType("VARCHAR", nullable, (data_type.length,))
    if isinstance(data_type, flink_types.CharType):
        return FlinkType("CHAR", nullable, (data_type.length,))
    if isinstance(data_type, flink_types.DecimalType):
        return FlinkType("DECIMAL", nullable, (data_type.precision, data_type.scale))
    if isinstance(data_type, flink_types.TimeType):
        return FlinkType("TIME", nullable, (data_type.precision,))
    if isinstance(data_type, flink_types.LocalZonedTimestampType):
        return FlinkType("TIMESTAMP_LTZ", nullable, (data_type.precision,))
    if isinstance(data_type, flink_types.TimestampType):
        return FlinkType("TIMESTAMP", nullable, (data_type.precision,))
    kind = _ATOMIC.get(type(data_type))
    if kind is None:
        raise InvalidOptionError(
            f"result_type: {data_type!r} has no JSON form; use ROW, ARRAY, MAP, strings, numbers, "
            "booleans, dates or timestamps"
        )
    return FlinkType(kind, nullable)  # type: ignore[arg-type]


def data_type_of(flink_type: FlinkType) -> DataType:
    """The PyFlink ``DataType`` of a type tree (what a UDF declares as its result)."""
    kind, nullable = flink_type.kind, flink_type.nullable
    if kind == "ROW":
        fields = [
            DataTypes.FIELD(field.name, data_type_of(field.type), field.description)
            for field in flink_type.fields
        ]
        return DataTypes.ROW(fields, nullable)
    if kind == "ARRAY":
        return DataTypes.ARRAY(data_type_of(flink_type.children[0]), nullable)
    if kind == "MAP":
        key, value = flink_type.children
        return DataTypes.MAP(data_type_of(key), data_type_of(value), nullable)
    params = flink_type.params
    simple: dict[str, Any] = {
        "STRING": lambda: DataTypes.STRING(nullable),
        "VARCHAR": lambda: DataTypes.VARCHAR(params[0], nullable),
        "CHAR": lambda: DataTypes.CHAR(params[0], nullable),
        "BOOLEAN": lambda: DataTypes.BOOLEAN(nullable),
        "TINYINT": lambda: DataTypes.TINYINT(nullable),
        "SMALLINT": lambda: DataTypes.SMALLINT(nullable),
        "INT": lambda: DataTypes.INT(nullable),
        "BIGINT": lambda: DataTypes.BIGINT(nullable),
        "FLOAT": lambda: DataTypes.FLOAT(nullable),
        "DOUBLE": lambda: DataTypes.DOUBLE(nullable),
        "DECIMAL": lambda: DataTypes.DECIMAL(params[0], params[1], nullable),
        "DATE": lambda: DataTypes.DATE(nullable),
        "TIME": lambda: DataTypes.TIME(params[0] if params else 0, nullable),
        "TIMESTAMP": lambda: DataTypes.TIMESTAMP(params[0] if params else 6, nullable),
        "TIMESTAMP_LTZ": lambda: DataTypes.TIMESTAMP_LTZ(params[0] if params else 6, nullable),
    }
    return simple[kind]()


def type_info_of(flink_type: FlinkType) -> TypeInformation:
    """The DataStream ``TypeInformation`` of a type tree (what a DataStream operator emits)."""
    kind = flink_type.kind
    if kind == "ROW":
        return Types.ROW_NAMED(
            [field.name for field in flink_type.fields],
            [type_info_of(field.type) for field in flink_type.fields],
        )
    if kind == "ARRAY":
        return Types.LIST(type_info_of(flink_type.children[0]))
    if kind == "MAP":
        key, value = flink_type.children
        return Types.MAP(type_info_of(key), type_info_of(value))
    simple: dict[str, TypeInformation] = {
        "BOOLEAN": Types.BOOLEAN(),
        "TINYINT": Types.BYTE(),
        "SMALLINT": Types.SHORT(),
        "INT": Types.INT(),
        "BIGINT": Types.LONG(),
        "FLOAT": Types.FLOAT(),
        "DOUBLE": Types.DOUBLE(),
        "DECIMAL": Types.BIG_DEC(),
        "DATE": Types.SQL_DATE(),
        "TIME": Types.SQL_TIME(),
        "TIMESTAMP": Types.SQL_TIMESTAMP(),
        "TIMESTAMP_LTZ": Types.SQL_TIMESTAMP(),
    }
    return simple.get(kind, Types.STRING())


def to_flink_value(value: Any, flink_type: FlinkType) -> Any:
    """A validated JSON value as Flink holds it: a ``Row`` for an object, lists, numbers, dates."""
    if value is None:
        return None
    kind = flink_type.kind
    if kind == "ROW":
        return Row(
            **{field.name: to_flink_value(value.get(field.name), field.type) for field in flink_type.fields}
        )
    if kind == "ARRAY":
        return [to_flink_value(item, flink_type.children[0]) for item in value]
    if kind == "MAP":
        return {key: to_flink_value(item, flink_type.children[1]) for key, item in value.items()}
    if kind in _INTEGER_BITS:
        number = int(value)
        bits = _INTEGER_BITS[kind]
        if not -(2 ** (bits - 1)) <= number < 2 ** (bits - 1):
            raise ValueError(f"{number} does not fit {kind}")
        return number
    if kind in ("FLOAT", "DOUBLE"):
        return float(value)
    if kind == "DECIMAL":
        amount = decimal.Decimal(str(value))
        precision, scale = flink_type.params
        if abs(amount) >= decimal.Decimal(10) ** (precision - scale):
            raise ValueError(f"{value} does not fit DECIMAL({precision}, {scale})")
        return amount.quantize(decimal.Decimal(1).scaleb(-scale))
    if kind in ("VARCHAR", "CHAR") and len(str(value)) > flink_type.params[0]:
        raise ValueError(f"{len(str(value))} characters do not fit {kind}({flink_type.params[0]})")
    if kind == "DATE":
        return datetime.date.fromisoformat(value)
    if kind == "TIME":
        return datetime.time.fromisoformat(value)
    if kind in ("TIMESTAMP", "TIMESTAMP_LTZ"):
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")).replace(tzinfo=None)
    return value


class ResultType:
    """A structured-output result type: its tree, JSON schema, ``DataType`` and type information.

    Built from a PyFlink ``DataType`` (``DataTypes.ROW([...])``) or a type string
    (``'ROW<sentiment STRING, score DOUBLE>'``); the top level must be a ROW.
    """

    def __init__(self, result_type: DataType | str) -> None:
        tree = parse_type_string(result_type) if isinstance(result_type, str) else flink_type_of(result_type)
        if tree.kind != "ROW":
            raise InvalidOptionError(
                f"result_type must be a ROW type (structured output is an object), got {result_type!r}"
            )
        self.tree = FlinkType("ROW", True, fields=tree.fields)
        self.schema = json_schema_of(FlinkType("ROW", False, fields=tree.fields))

    @property
    def data_type(self) -> DataType:
        return data_type_of(self.tree)

    @property
    def type_info(self) -> TypeInformation:
        return type_info_of(self.tree)

    def value(self, parsed: Any) -> Row | None:
        return to_flink_value(parsed, self.tree)


def result_type(value: DataType | str) -> ResultType:
    """``ResultType(value)``: the one way adapters read a user's result type."""
    return ResultType(value)
