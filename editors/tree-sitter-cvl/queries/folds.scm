; Fold object bodies, maps and block comments.
(body) @fold
(map) @fold
(comment) @fold
