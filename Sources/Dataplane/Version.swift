public enum DataplaneVersion { public static let string = "0.1.0" }
