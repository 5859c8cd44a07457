package models

import "errors"

func cnnLayers() ([]Layer, error) { return nil, errors.New("cnn: not yet available") }
